-- Rollback of V0012__lab_session_version_not_null
--
-- What: re-creates the helper CHECK that V0010 added and V0011 validated, validated
--   again (so the state before V0012 comes back exactly, and a re-apply can again
--   SET NOT NULL without a scan), then DROP NOT NULL on "labVersionId". V0010's
--   rollback drops the CHECK.
-- Transaction: yes.
-- Safety: no data touched.
-- Locks: ACCESS EXCLUSIVE on "LabSession" for the whole file, which includes one
--   scan of the table to validate the CHECK (every row is known not null: the
--   column was NOT NULL until this transaction): about 0.3 s per 1M sessions,
--   during which the app waits.

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_labVersionId_not_null"
CHECK ("labVersionId" IS NOT NULL) NOT VALID;

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_labVersionId_not_null";

ALTER TABLE "LabSession"
ALTER COLUMN "labVersionId" DROP NOT NULL;
