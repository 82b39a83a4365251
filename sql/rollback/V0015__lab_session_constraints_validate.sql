-- Rollback of V0015__lab_session_constraints_validate
--
-- What: nothing: PostgreSQL cannot turn a validated constraint back into a
--   NOT VALID one, and a validated constraint is strictly stronger. The
--   constraints themselves are dropped by the rollbacks of V0014 and V0008.
-- Safety: no data touched. Locks: none.

SELECT 'V0015__lab_session_constraints_validate: nothing to roll back' AS note;
