-- Rollback of V0012__lab_session_backfill
--
-- What: nothing to undo here. The backfilled values live in the columns that
--   V0008 added; V0008's rollback decides whether they may be dropped.
-- Safety: no data touched. Locks: none.

SELECT 'V0012__lab_session_backfill: nothing to roll back' AS note;
