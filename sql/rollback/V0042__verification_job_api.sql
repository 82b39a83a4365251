-- Rollback of V0042__verification_job_api
--
-- What: drops claim/complete/requeue and restores the enqueue placeholder of the
--   push ledger release (returns NULL: record_push then enqueues nothing).
-- Safety: no data involved (jobs are dropped, or refused, by V0040's rollback).
-- Locks: none on tables.

DROP FUNCTION requeue_expired_verification_jobs();

DROP FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb
);

DROP FUNCTION claim_verification_job(text, interval);

CREATE OR REPLACE FUNCTION enqueue_verification_job(p_lab_attempt_id uuid)
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
