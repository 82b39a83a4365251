-- Rollback of V0013__lab_session_one_active
-- harness: no-transaction
--
-- What: drops the partial unique index. No data involved.
-- Locks: DROP INDEX CONCURRENTLY waits for running transactions but blocks
--   nobody.

DROP INDEX CONCURRENTLY IF EXISTS "LabSession_userId_labId_active_key";
