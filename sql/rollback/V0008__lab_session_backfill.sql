-- Rollback of V0008__lab_session_backfill
--
-- What: nothing to undo: the values live in the columns V0006 added, and
--   V0006's rollback decides about them. Locks: none.

SELECT 'V0008__lab_session_backfill: nothing to roll back' AS note;
