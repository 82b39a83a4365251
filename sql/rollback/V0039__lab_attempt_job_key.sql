-- Rollback of V0039__lab_attempt_job_key
-- harness: no-transaction
--
-- What: drops the index (V0040's rollback has already dropped the foreign key
--   that used it). No data involved.
-- Locks: DROP INDEX CONCURRENTLY blocks nobody.

DROP INDEX CONCURRENTLY IF EXISTS "LabAttempt_id_sessionId_commitSha_key";
