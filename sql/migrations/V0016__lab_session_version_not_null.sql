-- V0016__lab_session_version_not_null: LabSession.labVersionId becomes NOT NULL
--
-- What: ALTER COLUMN "labVersionId" SET NOT NULL, then drops the helper CHECK
--   "LabSession_labVersionId_not_null" that made it cheap: since PostgreSQL 12,
--   SET NOT NULL skips the table scan when a validated CHECK (col IS NOT NULL)
--   already proves it.
-- Why: CONTRACT section 4 (NOT NULL once backfilled).
-- Locks: ACCESS EXCLUSIVE on "LabSession" for an instant (no scan).
-- Rollback: DROP NOT NULL and re-adds the helper CHECK (NOT VALID), which
--   V0014's rollback then drops.

ALTER TABLE "LabSession"
ALTER COLUMN "labVersionId" SET NOT NULL;

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_labVersionId_not_null";
