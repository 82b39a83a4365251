-- Rollback of V0010__lab_session_constraints
--
-- What: drops the CHECK constraints V0010 added. No data involved.
-- Transaction: yes.
-- Locks: ACCESS EXCLUSIVE on each table for an instant (catalog only).

ALTER TABLE "AuditLog"
DROP CONSTRAINT "AuditLog_createdAt_check";

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_startedAt_check";

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_lastActivityAt_check";

ALTER TABLE "Session"
DROP CONSTRAINT "Session_expires_check";

ALTER TABLE "AuthSession"
DROP CONSTRAINT "AuthSession_expires_check";

ALTER TABLE "VerificationToken"
DROP CONSTRAINT "VerificationToken_expires_check";

ALTER TABLE "User"
DROP CONSTRAINT "User_createdAt_check";

ALTER TABLE "User"
DROP CONSTRAINT "User_updatedAt_check";

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_completedAt_check";

ALTER TABLE "LabSession"
DROP CONSTRAINT IF EXISTS "LabSession_labVersionId_not_null";
