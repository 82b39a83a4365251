-- V0012__lab_session_version_not_null: LabSession.labVersionId NOT NULL, without a scan
--
-- What: SET NOT NULL on "labVersionId", then drops the CHECK of V0010 that
--   proved it.
-- Why: CONTRACT section 4 (NOT NULL once backfilled). PostgreSQL skips the
--   table scan of SET NOT NULL when a validated CHECK (col IS NOT NULL)
--   exists, so the ACCESS EXCLUSIVE lock lasts an instant.
-- Transaction: yes.
-- Locks: ACCESS EXCLUSIVE on "LabSession" for an instant (no scan), taken with
--   100 ms attempts and retries (at 1M with a long reader in front: 5
--   retries, 3.1 s of waiting).
-- Pre-conditions: V0011 validated "LabSession_labVersionId_not_null".
-- Rollback: restores the validated CHECK and drops NOT NULL (ACCESS EXCLUSIVE
--   on "LabSession" while the CHECK is validated again: about 0.3 s per 1M
--   sessions).

ALTER TABLE "LabSession"
ALTER COLUMN "labVersionId" SET NOT NULL;

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_labVersionId_not_null";
