-- Rollback of V0012__lab_session_version_not_null
--
-- What: DROP NOT NULL on "labVersionId" and re-create the helper CHECK that
--   V0010 added (NOT VALID; V0010's rollback drops it).
-- Transaction: yes.
-- Safety: no data touched. Locks: ACCESS EXCLUSIVE on "LabSession", an instant.

ALTER TABLE "LabSession"
ALTER COLUMN "labVersionId" DROP NOT NULL;

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_labVersionId_not_null"
CHECK ("labVersionId" IS NOT NULL) NOT VALID;
