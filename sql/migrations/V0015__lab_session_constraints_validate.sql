-- V0015__lab_session_constraints_validate: validate LabSession's new constraints
--
-- What: VALIDATE CONSTRAINT for "LabSession_labVersionId_fkey" (V0008),
--   "LabSession_labVersionId_not_null" and "LabSession_completedAt_check"
--   (V0014): existing rows are scanned once; V0014's pre-flight already showed
--   they hold.
-- Why: constraints that are NOT VALID do not prove anything about old rows;
--   `harness verify` requires every constraint validated.
-- Locks: SHARE UPDATE EXCLUSIVE on "LabSession" (reads and writes continue;
--   only DDL and VACUUM wait) and ROW SHARE on "LabVersion" during the scan.
--   This is why it runs in its own transaction, after V0014 committed.
-- Rollback: a validated constraint cannot be made NOT VALID again; the
--   rollback marks nothing and changes nothing (V0014/V0008 rollbacks drop them).

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_labVersionId_fkey";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_labVersionId_not_null";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_completedAt_check";
