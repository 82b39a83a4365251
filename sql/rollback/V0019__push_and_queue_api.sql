-- Rollback of V0019__push_and_queue_api
--
-- What: drops the API functions (queue, push, binding, chain verifier).
-- Transaction: yes.
-- Safety: no data involved. Locks: catalog only.

DROP FUNCTION requeue_expired_verification_jobs();

DROP FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb, uuid, bytea, text, timestamptz
);

DROP FUNCTION claim_verification_job(text, interval);

DROP FUNCTION enqueue_verification_job(uuid);

DROP FUNCTION record_push(text, bigint, text, text, text, timestamptz, jsonb);

DROP FUNCTION git_branch_name_valid(text);

DROP FUNCTION resolve_lab_session(bigint, text);

DROP FUNCTION create_lab_session(uuid, uuid, text, bigint, text);

DROP FUNCTION api_bad_input(text, text, text, text);

DROP FUNCTION verify_lab_attempt_chain(uuid);
