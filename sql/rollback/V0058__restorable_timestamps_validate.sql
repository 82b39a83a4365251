-- Rollback of V0058__restorable_timestamps_validate
--
-- What: nothing: PostgreSQL cannot turn a validated constraint back into a
--   NOT VALID one, and a validated constraint is strictly stronger. The
--   constraints themselves are dropped by the rollback of V0057.
-- Safety: no data touched. Locks: none.

SELECT 'V0058__restorable_timestamps_validate: nothing to roll back' AS note;
