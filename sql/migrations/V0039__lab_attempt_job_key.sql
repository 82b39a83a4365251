-- V0039__lab_attempt_job_key: the key a verification job references
-- harness: no-transaction
--
-- What: UNIQUE INDEX "LabAttempt_id_sessionId_commitSha_key" on "LabAttempt"
--   ("id", "sessionId", "commitSha"). "id" alone is already unique; the wider
--   key lets "VerificationJob" reference (labAttemptId, sessionId, commitSha)
--   so that a job's session and commit are, by foreign key, its attempt's.
-- Why: CONTRACT section 4 (VerificationJob.commitSha equal to the attempt's).
-- Locks: CREATE INDEX CONCURRENTLY: SHARE UPDATE EXCLUSIVE, the push ledger
--   keeps taking rows while it builds. If interrupted it leaves an INVALID
--   index, which the harness drops before rerunning this file (with psql:
--   DROP INDEX CONCURRENTLY it first). IF NOT EXISTS makes a rerun a no-op.
-- Rollback: DROP INDEX CONCURRENTLY.

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS
"LabAttempt_id_sessionId_commitSha_key"
ON "LabAttempt" ("id", "sessionId", "commitSha");
