-- Rollback of V0054__session_serialisation_row_locks
--
-- What: restores lab_attempt_session_lock as V0026 created it and
--   create_lab_session as V0028 created it (bodies byte for byte; EXECUTE
--   privileges are unchanged by CREATE OR REPLACE). No data involved.
-- Locks: none on tables.

CREATE OR REPLACE FUNCTION lab_attempt_session_lock(p_session_id uuid)
RETURNS void
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_advisory_xact_lock(
        19521,
        ('x' || left(replace(p_session_id::text, '-', ''), 8))::bit(32)::integer
    )
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

    PERFORM pg_advisory_xact_lock(19522, hashtext(p_idempotency_key));
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
    RETURN v_session;
END;
$$;
