-- Rollback of V0016__lab_session_version_not_null
--
-- What: DROP NOT NULL on "labVersionId" and re-create the helper CHECK that
--   V0014 added (NOT VALID; its own rollback drops it).
-- Safety: no data touched. Locks: ACCESS EXCLUSIVE on "LabSession", an instant.

ALTER TABLE "LabSession"
ALTER COLUMN "labVersionId" DROP NOT NULL;

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_labVersionId_not_null"
CHECK ("labVersionId" IS NOT NULL) NOT VALID;
