-- Rollback of V0011__lab_session_constraints_validate
--
-- What: nothing to undo: a validated constraint is dropped by V0010's (or
--   V0006's) rollback. Locks: none.

SELECT 'V0011__lab_session_constraints_validate: nothing to roll back' AS note;
