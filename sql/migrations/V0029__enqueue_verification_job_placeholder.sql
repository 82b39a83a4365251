-- V0029__enqueue_verification_job_placeholder: the queue hook record_push calls
--
-- What: enqueue_verification_job(p_lab_attempt_id uuid) RETURNS uuid, SECURITY
--   DEFINER, pinned search_path. PLACEHOLDER: it does nothing and returns NULL.
--   The job queue (VerificationJob, V0040+) replaces its body with CREATE OR REPLACE
--   FUNCTION (same signature, so record_push and the grants stay as they are):
--   idempotent, one job per (sessionId, commitSha), NOTIFY
--   verification_job_queued. record_push calls it for the head commit's
--   LabAttempt in the same transaction and returns its result as the job id.
-- Why: CONTRACT section 5; the push ledger lands before the job queue.
-- Locks: none.
-- Rollback: drops the function (the job queue's rollback restores this placeholder
--   body before this file's rollback can run).

CREATE FUNCTION enqueue_verification_job(p_lab_attempt_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    -- Placeholder until the job queue: no queue yet, so no job id.
    PERFORM p_lab_attempt_id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION enqueue_verification_job(uuid) IS
'Placeholder (V0029): returns NULL. The job queue (V0042) replaces it with CREATE OR REPLACE.';

REVOKE ALL ON FUNCTION enqueue_verification_job(uuid) FROM PUBLIC;
