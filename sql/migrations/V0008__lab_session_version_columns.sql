-- V0008__lab_session_version_columns: LabSession.labVersionId and completedAt
--
-- What: adds "labVersionId" (nullable for now; V0010 backfills it, V0011-V0013
--   make it NOT NULL) and "completedAt" (NULL while the session is active), and
--   the foreign key ("labVersionId", "labId") -> "LabVersion" ("id", "labId")
--   added NOT VALID: new and updated rows are checked at once, existing rows are
--   validated later without blocking writes. Because it covers both columns, the
--   database itself guarantees that a session's version belongs to its lab.
-- Why: CONTRACT section 4 (B6 tasks 45, 47).
--   After a preserving rollback, the archived ("labVersionId", "completedAt")
--   of every session (forgea_archive."LabSession_version_columns_V0008_<time>")
--   are put back by id before V0012 derives anything, so V0012 fills only
--   sessions created while rolled back. A session deleted meanwhile refuses
--   (FM003, naming it; nothing changed).
-- Locks: ADD COLUMN without a default is catalog-only (ACCESS EXCLUSIVE on
--   "LabSession" for an instant, no rewrite); ADD CONSTRAINT ... NOT VALID takes
--   SHARE ROW EXCLUSIVE on "LabSession" and "LabVersion" for an instant, no scan.
--   The restore (only when an unrestored archive exists) updates every archived
--   session in this transaction: the ACCESS EXCLUSIVE lock of ADD COLUMN is held
--   for the whole UPDATE (about a second per 100k sessions; maintenance window).
-- Rollback: drops the constraint and both columns; refuses (FM002) when a
--   session holds a value that the previous schema cannot rebuild (a version
--   other than its lab's first, or a completedAt set by the lifecycle after the
--   migration) unless forgea.rollback_preserve = on, which archives
--   ("id", "labVersionId", "completedAt") of every session first.

ALTER TABLE "LabSession"
ADD COLUMN "labVersionId" UUID,
ADD COLUMN "completedAt" TIMESTAMP(3);

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_labVersionId_fkey"
FOREIGN KEY ("labVersionId", "labId")
REFERENCES "LabVersion" ("id", "labId")
ON DELETE RESTRICT ON UPDATE RESTRICT
NOT VALID;

SELECT forgea_archive_restore_columns(
    '"LabSession"', 'LabSession_version_columns', 'V0008',
    ARRAY['labVersionId', 'completedAt']
);
