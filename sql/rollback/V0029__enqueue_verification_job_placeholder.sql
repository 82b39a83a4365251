-- Rollback of V0029__enqueue_verification_job_placeholder
--
-- What: drops enqueue_verification_job(uuid). No data involved. Locks: none.

DROP FUNCTION enqueue_verification_job(uuid);
