-- V0011__lab_session_constraints_validate: validate the constraints of V0010
--
-- What:
--   VALIDATE CONSTRAINT for "LabSession_labVersionId_fkey" (V0006),
--   "LabSession_labVersionId_not_null" and "LabSession_completedAt_check"
--   (V0010): existing rows are scanned once; V0010's pre-flight already showed
--   they hold.
--
--   VALIDATE CONSTRAINT for each CHECK of V0010: existing rows are scanned
--   once; V0010's pre-flight already showed they hold.
-- Why: the constraints hold for old rows too, proven by PostgreSQL, without
--   blocking the app while it scans.
-- Transaction: yes.
-- Locks: VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on each table (reads
--   and writes continue) while it scans, and ROW SHARE on "LabVersion" for the
--   foreign key. At 1M sessions: a few seconds of scanning, no app wait.
-- Pre-conditions: those of V0010 (they are checked again by the scan).
-- Rollback: nothing to undo (a validated constraint is dropped by V0010's
--   rollback).

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_labVersionId_fkey";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_labVersionId_not_null";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_completedAt_check";

ALTER TABLE "AuditLog"
VALIDATE CONSTRAINT "AuditLog_createdAt_check";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_startedAt_check";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_lastActivityAt_check";

ALTER TABLE "Session"
VALIDATE CONSTRAINT "Session_expires_check";

ALTER TABLE "AuthSession"
VALIDATE CONSTRAINT "AuthSession_expires_check";

ALTER TABLE "VerificationToken"
VALIDATE CONSTRAINT "VerificationToken_expires_check";

ALTER TABLE "User"
VALIDATE CONSTRAINT "User_createdAt_check";

ALTER TABLE "User"
VALIDATE CONSTRAINT "User_updatedAt_check";
