-- Rollback of V0043__verification_job_validate
--
-- What: nothing: a validated constraint cannot be made NOT VALID again and is
--   only stronger; V0040's rollback drops the constraint itself.
-- Safety: no data touched. Locks: none.

SELECT 'V0043__verification_job_validate: nothing to roll back' AS note;
