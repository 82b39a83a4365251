-- V0028__session_binding_api: create_lab_session and resolve_lab_session
--
-- What:
--   api_bad_input(p_function, p_field, p_rule, p_value): raises SQLSTATE 22023
--     with the message '<function>: <field> <rule> (got <value, quoted, cut to
--     100 characters>)'. Internal helper of the API functions (no grants).
--   create_lab_session(p_user_id uuid, p_lab_id uuid, p_fork_url text,
--     p_provider_repo_id bigint, p_idempotency_key text) RETURNS uuid,
--     SECURITY DEFINER: inserts the LabSession (IN_PROGRESS; labVersionId left
--     to the lab-version default, i.e. the lab's latest version; userForkUrl as
--     given) and its GitHubRepoMapping (canonical URL, providerRepoId if given,
--     the idempotency key and a SHA-256 digest of the arguments) in one
--     transaction. Idempotent: the key is serialised with a transaction advisory
--     lock; a key already used with the same arguments returns the same session
--     and creates nothing; with other arguments -> 22023. Bad input -> 22023
--     (NULL ids; fork URL that canonical_repo_url() rejects; repository id <= 0;
--     key NULL, empty, over 200 characters or with control characters).
--     Another active session on the same repository (id or URL) -> 23505 from
--     the partial unique indexes; a second active session of the same user and
--     lab -> 23505 (lifecycle issue); unknown user/lab -> 23503. Nothing is
--     written on any error.
--   resolve_lab_session(p_provider_repo_id bigint, p_repo_url text) RETURNS uuid,
--     STABLE: the ACTIVE session bound to the repository, by providerRepoId
--     first, then by canonical URL; the URL fallback never matches a mapping
--     whose providerRepoId is set to a different id (a repository deleted and
--     re-created under the same name is another repository). NULL if none.
-- Why: CONTRACT section 5 (repository binding).
-- Locks: none at creation. At run time: row locks of the inserted rows only.
-- Rollback: drops the three functions. No data involved.

CREATE FUNCTION api_bad_input(
    p_function text, p_field text, p_rule text, p_value text
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '%: % % (got %)',
        p_function, p_field, p_rule,
        CASE
            WHEN p_value IS NULL THEN 'NULL'
            WHEN length(p_value) > 100
                THEN quote_literal(left(p_value, 100)) || '...'
            ELSE quote_literal(p_value)
        END
        USING ERRCODE = '22023';
END;
$$;

REVOKE ALL ON FUNCTION api_bad_input(text, text, text, text) FROM PUBLIC;

CREATE FUNCTION create_lab_session(
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

CREATE FUNCTION resolve_lab_session(p_provider_repo_id bigint, p_repo_url text)
RETURNS uuid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT coalesce(
        (
            SELECT m."sessionId"
            FROM public."GitHubRepoMapping" AS m
            INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
            WHERE
                m."providerRepoId" = p_provider_repo_id
                AND m."sessionActive"
                AND lab_status_is_active(s."status"::text)
            LIMIT 1
        ),
        (
            SELECT m."sessionId"
            FROM public."GitHubRepoMapping" AS m
            INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
            WHERE
                m."repoUrl" = canonical_repo_url(p_repo_url)
                AND m."sessionActive"
                AND lab_status_is_active(s."status"::text)
                AND (
                    m."providerRepoId" IS NULL
                    OR p_provider_repo_id IS NULL
                    OR m."providerRepoId" = p_provider_repo_id
                )
            LIMIT 1
        )
    )
$$;

REVOKE ALL ON FUNCTION create_lab_session(uuid, uuid, text, bigint, text)
FROM PUBLIC;
REVOKE ALL ON FUNCTION resolve_lab_session(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_lab_session(uuid, uuid, text, bigint, text)
TO forgea_app;
GRANT EXECUTE ON FUNCTION resolve_lab_session(bigint, text)
TO forgea_app, forgea_worker;
