-- Rollback of V0014__lab_session_constraints
--
-- What: drops the two CHECK constraints. No data involved.
-- Locks: ACCESS EXCLUSIVE on "LabSession" for an instant (catalog only).

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_completedAt_check";

ALTER TABLE "LabSession"
DROP CONSTRAINT IF EXISTS "LabSession_labVersionId_not_null";
