-- V0054__session_serialisation_row_locks: no role that can only read can stall a writer
--
-- What:
--   lab_attempt_session_lock(p_session_id): the per-session serialisation of the
--     push ledger (record_push and the chain trigger labattempt_chain_hash) is now
--     a row lock on the session, SELECT ... FOR NO KEY UPDATE, instead of
--     pg_advisory_xact_lock(19521, <first 32 bits of the session id>). Pushes to
--     one session still queue up, different sessions still do not wait on each
--     other, and the lock is still re-entrant within a transaction.
--   create_lab_session(...): no advisory lock on the idempotency key any more.
--     Concurrent calls with one key serialise on the unique indexes their
--     inserts meet ("GitHubRepoMapping_idempotencyKey_key", or the one active
--     session per user and lab): the later insert waits for the earlier
--     transaction and then fails; the function catches that failure, and if the
--     key is now recorded it answers as an idempotent repeat (same session) or
--     with 22023 (other arguments). Any other unique violation is re-raised
--     (23505, as before).
--   A role that can only read cannot take either lock: row locks need the
--   UPDATE privilege (forgea_readonly and forgea_worker hold only SELECT on
--   "LabSession"), and only the owner (through these SECURITY DEFINER
--   functions) inserts mappings. pg_advisory_lock is executable by every role
--   and only a superuser could revoke it, so advisory keys computable from
--   readable data (the session id, the idempotency key) let any login stall
--   record_push or create_lab_session until their statement timeout.
-- Why: SELECT pg_advisory_lock(19521, <first 32 bits of the session id>) as
--   forgea_readonly made every push of that session wait.
-- Locks: none at creation. At run time: the session's row (FOR NO KEY UPDATE)
--   for the length of a push, which conflicts with UPDATEs of that session
--   (as the FOR SHARE lock record_push already took did) but not with foreign
--   key checks.
-- Rollback: restores V0026's lab_attempt_session_lock and V0028's
--   create_lab_session (bodies byte for byte). No data involved.

CREATE OR REPLACE FUNCTION lab_attempt_session_lock(p_session_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    -- a row lock only writers can take: FOR NO KEY UPDATE needs the UPDATE
    -- privilege, which no role but the owner and forgea_app (status and
    -- lastActivityAt) holds; it leaves FOR KEY SHARE (foreign key checks of
    -- rows that reference the session) free
    PERFORM 1 FROM public."LabSession" AS s
    WHERE s."id" = p_session_id
    FOR NO KEY UPDATE;
END;
$$;

CREATE OR REPLACE FUNCTION create_lab_session(
    p_user_id uuid,
    p_lab_id uuid,
    p_fork_url text,
    p_provider_repo_id bigint,
    p_idempotency_key text
)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    fn constant text := 'create_lab_session';
    v_url text := canonical_repo_url(p_fork_url);
    v_digest bytea;
    v_prev record;
    v_session uuid;
BEGIN
    IF p_user_id IS NULL THEN
        PERFORM api_bad_input(fn, 'p_user_id', 'must not be NULL', NULL);
    END IF;
    IF p_lab_id IS NULL THEN
        PERFORM api_bad_input(fn, 'p_lab_id', 'must not be NULL', NULL);
    END IF;
    IF v_url IS NULL THEN
        PERFORM api_bad_input(fn, 'p_fork_url',
            'must be a GitHub repository URL (https/ssh/git@ form)', p_fork_url);
    END IF;
    IF p_provider_repo_id <= 0 THEN
        PERFORM api_bad_input(fn, 'p_provider_repo_id', 'must be positive',
            p_provider_repo_id::text);
    END IF;
    IF p_idempotency_key IS NULL OR length(p_idempotency_key) > 200
        OR btrim(p_idempotency_key) = '' OR p_idempotency_key ~ '[[:cntrl:]]' THEN
        PERFORM api_bad_input(fn, 'p_idempotency_key',
            'must be 1-200 characters without control characters',
            p_idempotency_key);
    END IF;
    v_digest := sha256(convert_to(concat_ws(E'\n', p_user_id::text,
        p_lab_id::text, v_url, coalesce(p_provider_repo_id::text, '-')), 'UTF8'));

    SELECT m."sessionId", m."requestDigest" INTO v_prev
    FROM public."GitHubRepoMapping" AS m
    WHERE m."idempotencyKey" = p_idempotency_key;
    IF FOUND THEN
        IF v_prev."requestDigest" <> v_digest THEN
            PERFORM api_bad_input(fn, 'p_idempotency_key',
                'was already used with different arguments', p_idempotency_key);
        END IF;
        RETURN v_prev."sessionId";
    END IF;

    -- Concurrent calls with one key serialise on the unique indexes (the
    -- second insert waits for the first transaction, then fails): only
    -- writers can hold those, unlike an advisory lock any role can take.
    BEGIN
        INSERT INTO public."LabSession" ("id", "userId", "labId", "userForkUrl")
        VALUES (gen_random_uuid(), p_user_id, p_lab_id, p_fork_url)
        RETURNING "id" INTO v_session;

        INSERT INTO public."GitHubRepoMapping" (
            "sessionId", "providerRepoId", "repoFullName", "repoUrl",
            "idempotencyKey", "requestDigest"
        )
        VALUES (
            v_session, p_provider_repo_id, substr(v_url, 20), v_url,
            p_idempotency_key, v_digest
        );
    EXCEPTION WHEN unique_violation THEN
        SELECT m."sessionId", m."requestDigest" INTO v_prev
        FROM public."GitHubRepoMapping" AS m
        WHERE m."idempotencyKey" = p_idempotency_key;
        IF NOT FOUND THEN
            RAISE;
        END IF;
        IF v_prev."requestDigest" <> v_digest THEN
            PERFORM api_bad_input(fn, 'p_idempotency_key',
                'was already used with different arguments', p_idempotency_key);
        END IF;
        RETURN v_prev."sessionId";
    END;
    RETURN v_session;
END;
$$;
