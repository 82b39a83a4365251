-- V0058__restorable_timestamps_validate: validate V0057's timestamp bounds
--
-- What: VALIDATE CONSTRAINT for each CHECK of V0057: existing rows are scanned
--   once; V0057's pre-flight already showed they hold.
-- Why: constraints that are NOT VALID do not prove anything about old rows;
--   `harness verify` requires every constraint validated.
-- Locks: SHARE UPDATE EXCLUSIVE on each table during its scan (reads and writes
--   continue; only DDL and VACUUM wait). This is why it runs in its own
--   transaction, after V0057 committed.
-- Rollback: a validated constraint cannot be made NOT VALID again; the rollback
--   changes nothing (V0057's rollback drops the constraints).

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
