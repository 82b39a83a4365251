-- V0019__push_and_queue_api: the SQL API of sessions, pushes and the job queue
--
-- What: the functions the app and the workers call (CONTRACT section 5). Those
--   that write are SECURITY DEFINER (they write tables their callers cannot),
--   pin search_path to pg_catalog, public, pg_temp, schema-qualify every table,
--   and are executable only by the roles named (EXECUTE revoked from PUBLIC).
--   Bad input is refused through api_bad_input(function, field, rule, value):
--   22023, '<function>: <field> <rule> (got <value, quoted, cut to 100
--   characters>)', and nothing is written on any error.
--   * verify_lab_attempt_chain(session DEFAULT NULL)        forgea_readonly, worker
--     One row per problem of the LabAttempt hash chains (no rows = intact):
--     'edited' (a row no longer hashes to its rowHash, its predecessor was
--     rewritten, or it differs from its PUSH_RECORDED anchor), 'missing' (a
--     gap in chainSeq, or an anchored row deleted: this catches deletion of the
--     newest rows, which a chain alone cannot see), 'reordered'. Anchors:
--     record_push writes each created row's id, chainSeq and rowHash into its
--     append-only PUSH_RECORDED AuditLog row.
--   * create_lab_session(user, lab, fork URL, repo id, idempotency key) -> uuid
--                                                                   forgea_app
--     The session (IN_PROGRESS, the lab's latest version) and its
--     GitHubRepoMapping (canonical URL, the repository id if given, the key and
--     a SHA-256 digest of the arguments) in one transaction. The same key with
--     the same arguments returns the same session and creates nothing; with
--     other arguments 22023. Concurrent calls with one key serialise on the
--     unique indexes their inserts meet (no advisory lock a reader could hold).
--     Bad input 22023 (NULL ids; a fork URL canonical_repo_url() rejects; a
--     repository id outside 1 .. 2^53 - 1; a key NULL, empty, over 200
--     characters or with control characters); another active session on the
--     repository, or of the same user and lab, 23505; unknown user or lab 23503.
--   * resolve_lab_session(repo id, repo URL) -> uuid    forgea_app, forgea_worker
--     The ACTIVE session bound to the repository id, else to the canonical URL;
--     the URL never matches a mapping bound to a different id; NULL when none,
--     or when the id names one active session and the URL another (ambiguous:
--     neither gets it).
--   * enqueue_verification_job(lab attempt) -> job id              forgea_app
--     Idempotent (concurrent calls create one job); the job takes the session's
--     current labVersionId; an unknown attempt 22023, a session no longer
--     active FL003. A new job sends NOTIFY verification_job_queued, '<job id>'
--     (delivered on commit).
--   * git_branch_name_valid(branch) and record_push(delivery id, repo id, repo
--     URL, ref, head SHA, pushed at, commits) -> (commit_sha, lab_attempt_id,
--     created, verification_job_id, outcome)                       forgea_app
--     One result row per commit in push order; outcome 'recorded', 'existing'
--     (the session had it from another delivery), 'duplicate' (a redelivery:
--     nothing created, AuditLog PUSH_DUPLICATE_DELIVERY) or 'rejected' (no
--     active session, a terminal one, or an ambiguous repository: nothing
--     created, AuditLog PUSH_REJECTED with sqlstate FL003, not an exception, so
--     the audit row survives). Validation first, all 22023 naming the field:
--     the delivery id, the repository id (1 .. 2^53 - 1), the URL, the ref
--     ('refs/heads/<valid branch>'), SHAs (lowercase hex 40/64), the push time
--     (2005-04-07 .. one day after the database clock), the commits (a JSON
--     array of at most 2048 objects and 25 MB, each with id, author, added /
--     modified / removed lists of at most 3000 paths of at most 4096
--     characters, an ISO 8601 timestamp; no id twice; the head among them; an
--     empty array only for a head the session already holds). Then the
--     session's row lock (pushes to one session run one at a time), the
--     delivery register, one INSERT ... SELECT of the new commits in push order
--     (chained by V0018's trigger), the repository id learned once (only when
--     no other active session holds it), the head commit's job, the delivery
--     row and AuditLog PUSH_RECORDED with the anchors. Callers should use READ
--     COMMITTED (in REPEATABLE READ a concurrent duplicate fails with 23505).
--   * claim_verification_job(worker, lease) -> the job row and "leaseToken", or
--     no row                                                     forgea_worker
--     The oldest QUEUED job whose session has no RUNNING and no older QUEUED job
--     (a session's jobs run oldest first, one at a time), FOR UPDATE SKIP
--     LOCKED so concurrent workers neither block nor collide; RUNNING, runCount
--     + 1, the lease, startedAt on the first run, and a fresh random lease token
--     per run whose SHA-256 it stores ("leaseTokenHash"; the token is never
--     stored); it also keeps the token in the claiming connection's setting
--     forgea.lease_tokens ('<job id>:<token>', the 32 newest).
--   * complete_verification_job(job, worker, status, exit code, logs, lease
--     token DEFAULT NULL) -> the job row                          forgea_worker
--     Only the lease holder before the lease expires, presenting the token of
--     the job's current run (p_lease_token, else the one its connection's claim
--     kept): otherwise FQ002 naming the job and its run. Status PASSED, FAILED
--     or ERROR; exit code -255 .. 255; logs a JSON object nested at most 64
--     levels (22023). PASSED and FAILED append the VerificationAttempt (PASS /
--     FAIL) in the same transaction; PASSED moves an IN_PROGRESS or STUCK
--     session to VERIFIED_PASS (a DEFERRED one stays DEFERRED); ERROR never
--     creates an attempt or a pass. Behind a pooler in transaction mode, pass
--     p_lease_token explicitly.
--     Trailing, all DEFAULT NULL (the five- and six-argument calls still
--     resolve): p_attestation_signature bytea, p_attestation_key_id text,
--     p_completed_at timestamptz: the worker's Ed25519 signature over the
--     statement forgea.attestation.v1 (docs/security.md), its key id, and the
--     completion time it signed. Stored on the job as given (never verified
--     here: the database holds no key; `harness verify --worker-keys` checks
--     them); p_completed_at becomes "completedAt". 22023: signature without
--     key id or the reverse, a signature not of 64 bytes, a key id not 1-128 of
--     [A-Za-z0-9._:-], a signature without p_completed_at, p_completed_at finer
--     than a millisecond, or outside the job's start - 1 minute .. the database
--     clock + 1 minute (clock skew), an attested p_logs with a top-level "job"
--     member.
--   * requeue_expired_verification_jobs() -> jobs moved          forgea_worker
--     RUNNING jobs whose lease expired go back to QUEUED while runs remain (at
--     most 3), else to ERROR with a reason; requeued jobs are NOTIFYed again.
--   Waiting: every writing API function (create_lab_session,
--     enqueue_verification_job, record_push, claim_verification_job,
--     complete_verification_job, requeue_expired_verification_jobs) runs with
--     SET lock_timeout = '5s': behind a row or table lock another session
--     holds (the app can hold a session row FOR UPDATE), the call fails after
--     5 s with 55P03 (lock_not_available), its transaction rolled back and
--     nothing changed: retry it (a completion while the lease lasts).
--     Job moves are authorised by the call stack, never by a setting (V0018).
-- Why: CONTRACT section 5. Created after the guards of V0018, so nothing can
--   write the ledger or the queue before they are guarded.
-- Transaction: yes.
-- Locks: CREATE FUNCTION only (catalog). At 1M: under 0.1 s.
-- Pre-conditions: none.
-- Rollback: drops the functions. No data involved.

CREATE FUNCTION verify_lab_attempt_chain(p_session_id uuid DEFAULT NULL)
RETURNS TABLE (
    session_id uuid,
    chain_seq bigint,
    lab_attempt_id uuid,
    problem text,
    detail text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH r AS (
        SELECT
            a."sessionId",
            a."chainSeq",
            a."id",
            a."prevHash",
            a."rowHash",
            lab_attempt_row_hash(a) AS calc,
            lag(a."chainSeq") OVER w AS prev_seq,
            lag(a."rowHash") OVER w AS prev_row_hash
        FROM public."LabAttempt" AS a
        WHERE p_session_id IS NULL OR a."sessionId" = p_session_id
        WINDOW w AS (PARTITION BY a."sessionId" ORDER BY a."chainSeq")
    ),

    problems AS (
        SELECT
            r."sessionId", r."chainSeq", r."id", 'edited' AS problem,
            'content does not hash to rowHash' AS detail
        FROM r
        WHERE r.calc IS DISTINCT FROM r."rowHash"
        UNION ALL
        SELECT
            r."sessionId", r."chainSeq", r."id", 'missing',
            format('chainSeq %s follows %s', r."chainSeq",
                coalesce(r.prev_seq::text, 'the start of the chain'))
        FROM r
        WHERE r."chainSeq" <> coalesce(r.prev_seq, 0) + 1
        UNION ALL
        SELECT
            r."sessionId", r."chainSeq", r."id",
            CASE WHEN EXISTS (
                SELECT 1 FROM public."LabAttempt" AS o
                WHERE
                    o."sessionId" = r."sessionId"
                    AND o."rowHash" = r."prevHash"
            ) OR r."prevHash" = decode(repeat('00', 32), 'hex')
                THEN 'reordered'
            ELSE 'edited'
            END,
            'prevHash does not link to the previous row'
        FROM r
        WHERE
            r."chainSeq" = coalesce(r.prev_seq, 0) + 1
            AND r."prevHash" IS DISTINCT FROM coalesce(
                r.prev_row_hash, decode(repeat('00', 32), 'hex')
            )
        UNION ALL
        SELECT
            (al."metadata" ->> 'sessionId')::uuid,
            (e.v ->> 'chainSeq')::bigint,
            (e.v ->> 'id')::uuid,
            CASE WHEN a."id" IS NULL THEN 'missing' ELSE 'edited' END,
            format('differs from the PUSH_RECORDED anchor in AuditLog %s', al."id")
        FROM public."AuditLog" AS al
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(al."metadata" -> 'attempts') = 'array'
                THEN al."metadata" -> 'attempts'
                ELSE '[]'::jsonb
            END
        ) AS e (v)
        LEFT JOIN public."LabAttempt" AS a ON a."id"::text = e.v ->> 'id'
        WHERE
            al."action" = 'PUSH_RECORDED'
            AND al."actorId" = 'github-webhook'
            AND al."metadata" ->> 'sessionId' ~ '^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$'
            AND e.v ->> 'id' ~ '^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$'
            AND e.v ->> 'chainSeq' ~ '^[0-9]{1,18}$'
            AND (p_session_id IS NULL
                OR al."metadata" ->> 'sessionId' = p_session_id::text)
            AND (
                a."id" IS NULL
                OR encode(a."rowHash", 'hex') IS DISTINCT FROM e.v ->> 'rowHash'
                OR a."chainSeq"::text IS DISTINCT FROM e.v ->> 'chainSeq'
            )
    )

    SELECT DISTINCT ON (p."sessionId", p."chainSeq", p."id", p.problem)
        p."sessionId", p."chainSeq", p."id", p.problem, p.detail
    FROM problems AS p
    ORDER BY p."sessionId", p."chainSeq", p."id", p.problem
$$;

COMMENT ON FUNCTION verify_lab_attempt_chain(uuid) IS
'Rows of the LabAttempt hash chains that are edited, missing or reordered; no rows = intact (V0019).';

REVOKE ALL ON FUNCTION verify_lab_attempt_chain(uuid) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION verify_lab_attempt_chain(uuid)
TO forgea_readonly, forgea_worker;

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
SET lock_timeout = '5s'
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
    IF p_provider_repo_id NOT BETWEEN 1 AND 9007199254740991 THEN
        PERFORM api_bad_input(fn, 'p_provider_repo_id',
            'must be between 1 and 9007199254740991 (2^53 - 1)',
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

CREATE FUNCTION resolve_lab_session(
    p_provider_repo_id bigint, p_repo_url text
)
RETURNS uuid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT CASE
        WHEN by_id.s IS NOT NULL AND by_url.s IS NOT NULL AND by_id.s <> by_url.s
            THEN NULL
        ELSE coalesce(by_id.s, by_url.s)
    END
    FROM
        (
            SELECT (
                SELECT m."sessionId"
                FROM public."GitHubRepoMapping" AS m
                INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
                WHERE
                    m."providerRepoId" = p_provider_repo_id
                    AND m."sessionActive"
                    AND lab_status_is_active(pg_catalog.format('%s', s."status"))
                LIMIT 1
            ) AS s
        ) AS by_id,
        (
            SELECT (
                SELECT m."sessionId"
                FROM public."GitHubRepoMapping" AS m
                INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
                WHERE
                    m."repoUrl" = canonical_repo_url(p_repo_url)
                    AND m."sessionActive"
                    AND lab_status_is_active(pg_catalog.format('%s', s."status"))
                    AND (
                        m."providerRepoId" IS NULL
                        OR p_provider_repo_id IS NULL
                        OR m."providerRepoId" = p_provider_repo_id
                    )
                LIMIT 1
            ) AS s
        ) AS by_url
$$;

REVOKE ALL ON FUNCTION create_lab_session(uuid, uuid, text, bigint, text)
FROM PUBLIC;

REVOKE ALL ON FUNCTION resolve_lab_session(bigint, text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION create_lab_session(uuid, uuid, text, bigint, text)
TO forgea_app;

GRANT EXECUTE ON FUNCTION resolve_lab_session(bigint, text)
TO forgea_app, forgea_worker;

CREATE FUNCTION enqueue_verification_job(p_lab_attempt_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    v_attempt record;
    v_job_id uuid;
BEGIN
    SELECT a."id", a."sessionId", a."commitSha", s."labVersionId",
        pg_catalog.format('%s', s."status") AS "status"
    INTO v_attempt
    FROM public."LabAttempt" AS a
    INNER JOIN public."LabSession" AS s ON a."sessionId" = s."id"
    WHERE a."id" = p_lab_attempt_id;
    IF NOT FOUND THEN
        PERFORM api_bad_input('enqueue_verification_job', 'p_lab_attempt_id',
            'must be the id of a LabAttempt', p_lab_attempt_id::text);
    END IF;

    SELECT j."id" INTO v_job_id
    FROM public."VerificationJob" AS j
    WHERE j."labAttemptId" = p_lab_attempt_id;
    IF FOUND THEN
        RETURN v_job_id;
    END IF;

    IF v_attempt."status" NOT IN ('IN_PROGRESS', 'STUCK', 'DEFERRED') THEN
        RAISE EXCEPTION
            'enqueue_verification_job: session % of attempt % is %, not active',
            v_attempt."sessionId", p_lab_attempt_id, v_attempt."status"
            USING ERRCODE = 'FL003';
    END IF;

    INSERT INTO public."VerificationJob" (
        "labAttemptId", "sessionId", "commitSha", "labVersionId"
    )
    VALUES (
        v_attempt."id", v_attempt."sessionId", v_attempt."commitSha",
        v_attempt."labVersionId"
    )
    ON CONFLICT DO NOTHING
    RETURNING "id" INTO v_job_id;

    IF v_job_id IS NULL THEN
        SELECT j."id" INTO STRICT v_job_id
        FROM public."VerificationJob" AS j
        WHERE
            j."sessionId" = v_attempt."sessionId"
            AND j."commitSha" = v_attempt."commitSha";
        RETURN v_job_id;
    END IF;

    PERFORM pg_notify('verification_job_queued', v_job_id::text);
    RETURN v_job_id;
END;
$$;

COMMENT ON FUNCTION enqueue_verification_job(uuid) IS
'Enqueue the verification job of a LabAttempt (V0019). Idempotent.';

REVOKE ALL ON FUNCTION enqueue_verification_job(uuid) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION enqueue_verification_job(uuid) TO forgea_app;

CREATE FUNCTION git_branch_name_valid(p_branch text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        octet_length(p_branch) BETWEEN 1 AND 255
        AND p_branch COLLATE "C" !~ '[[:cntrl:][:space:]~^:?*\[\\\x7f]'
        AND p_branch COLLATE "C" !~ '[\x80-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]'
        AND p_branch COLLATE "C" !~ '\.\.|@\{|//|^/|/$|(^|/)\.|\.lock(/|$)|\.$'
        AND p_branch COLLATE "C" <> '@',
        false
    )
$$;

REVOKE ALL ON FUNCTION git_branch_name_valid(text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION git_branch_name_valid(text)
TO forgea_app, forgea_worker, forgea_readonly;

CREATE FUNCTION record_push(
    p_delivery_id text,
    p_provider_repo_id bigint,
    p_repo_url text,
    p_ref text,
    p_head_sha text,
    p_pushed_at timestamptz,
    p_commits jsonb
)
RETURNS TABLE (
    commit_sha text,
    lab_attempt_id uuid,
    created boolean,
    verification_job_id uuid,
    outcome text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET lock_timeout = '5s'
AS $$
#variable_conflict use_column
DECLARE
    fn constant text := 'record_push';
    -- a SHA is 40 or 64 of [0-9a-f]: tested as its length and '^[0-9a-f]+$'
    -- (the same set as '^[0-9a-f]{40}([0-9a-f]{24})?$', whose counted
    -- repetitions cost the regex engine about 4 times more per commit)
    hex_re constant text := '^[0-9a-f]+$';
    ts_re constant text :=
        '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$';
    v_url text := canonical_repo_url(p_repo_url);
    v_branch text;
    v_n integer;
    v_f text;
    c jsonb;
    k text;
    v_sha text;
    v_shas text[] := '{}';
    v_session uuid;
    v_user uuid;
    v_status text;
    v_reason text;
    v_by_id uuid;
    v_by_url uuid;
    v_path text;
    v_del record;
    v_job uuid;
    v_head uuid;
    v_anchors jsonb := '[]';
    r_sha text[] := '{}';
    r_id uuid[] := '{}';
    r_new boolean[] := '{}';
    r_out text[] := '{}';
BEGIN
    -- 1. validation ----------------------------------------------------------
    IF p_delivery_id IS NULL
        OR p_delivery_id !~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$' THEN
        PERFORM api_bad_input(fn, 'p_delivery_id',
            'must be 1-100 characters of [A-Za-z0-9._:-] (X-GitHub-Delivery)',
            p_delivery_id);
    END IF;
    IF p_provider_repo_id NOT BETWEEN 1 AND 9007199254740991 THEN
        PERFORM api_bad_input(fn, 'p_provider_repo_id',
            'must be between 1 and 9007199254740991 (2^53 - 1)',
            p_provider_repo_id::text);
    END IF;
    IF v_url IS NULL THEN
        PERFORM api_bad_input(fn, 'p_repo_url',
            'must be a GitHub repository URL', p_repo_url);
    END IF;
    IF p_ref IS NULL OR left(p_ref, 11) <> 'refs/heads/'
        OR NOT git_branch_name_valid(substr(p_ref, 12)) THEN
        PERFORM api_bad_input(fn, 'p_ref',
            'must be refs/heads/<valid branch name>', p_ref);
    END IF;
    v_branch := substr(p_ref, 12);
    IF p_head_sha IS NULL
        OR NOT (length(p_head_sha) IN (40, 64) AND p_head_sha ~ hex_re) THEN
        PERFORM api_bad_input(fn, 'p_head_sha',
            'must be 40 or 64 lowercase hex characters', p_head_sha);
    END IF;
    IF p_pushed_at IS NULL OR NOT isfinite(p_pushed_at) THEN
        PERFORM api_bad_input(fn, 'p_pushed_at', 'must be a finite timestamp',
            p_pushed_at::text);
    END IF;
    IF p_pushed_at < '2005-04-07 00:00:00+00'::timestamptz
        OR p_pushed_at > now() + interval '1 day' THEN
        PERFORM api_bad_input(fn, 'p_pushed_at',
            'must lie between 2005-04-07 (the first git commit) and one day after the database clock',
            to_char(p_pushed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z" BC'));
    END IF;
    IF p_commits IS NULL OR jsonb_typeof(p_commits) <> 'array' THEN
        PERFORM api_bad_input(fn, 'p_commits', 'must be a JSON array',
            left(p_commits::text, 101));
    END IF;
    IF pg_column_size(p_commits) > 25 * 1024 * 1024 THEN
        PERFORM api_bad_input(fn, 'p_commits', 'must not exceed 25 MB',
            pg_column_size(p_commits)::text || ' bytes');
    END IF;
    v_n := jsonb_array_length(p_commits);
    IF v_n > 2048 THEN
        PERFORM api_bad_input(fn, 'p_commits', 'must hold at most 2048 commits',
            v_n::text || ' commits');
    END IF;
    FOR i IN 0 .. v_n - 1 LOOP
        c := p_commits -> i;
        v_f := format('p_commits[%s]', i);
        IF jsonb_typeof(c) <> 'object' THEN
            PERFORM api_bad_input(fn, v_f, 'must be an object', left(c::text, 101));
        END IF;
        v_sha := c ->> 'id';
        IF jsonb_typeof(c -> 'id') IS DISTINCT FROM 'string'
            OR NOT (length(v_sha) IN (40, 64) AND v_sha ~ hex_re) THEN
            PERFORM api_bad_input(fn, v_f || '.id',
                'must be 40 or 64 lowercase hex characters',
                coalesce(v_sha, (c -> 'id')::text));
        END IF;
        IF v_sha = ANY(v_shas) THEN
            PERFORM api_bad_input(fn, v_f || '.id', 'appears twice in the push',
                v_sha);
        END IF;
        v_shas := v_shas || v_sha;
        IF jsonb_typeof(c -> 'author') IS DISTINCT FROM 'object' THEN
            PERFORM api_bad_input(fn, v_f || '.author', 'must be an object',
                left((c -> 'author')::text, 101));
        END IF;
        IF jsonb_typeof(c -> 'author' -> 'name') IS DISTINCT FROM 'string'
            OR btrim(c -> 'author' ->> 'name') = ''
            OR length(c -> 'author' ->> 'name') > 1000 THEN
            PERFORM api_bad_input(fn, v_f || '.author.name',
                'must be a non-empty string of at most 1000 characters',
                left((c -> 'author' -> 'name')::text, 101));
        END IF;
        FOREACH k IN ARRAY ARRAY['email', 'username'] LOOP
            IF coalesce(jsonb_typeof(c -> 'author' -> k), 'null')
                NOT IN ('null', 'string')
                OR length(c -> 'author' ->> k) > 1000 THEN
                PERFORM api_bad_input(fn, v_f || '.author.' || k,
                    'must be a string of at most 1000 characters or null',
                    left((c -> 'author' -> k)::text, 101));
            END IF;
        END LOOP;
        FOREACH k IN ARRAY ARRAY['added', 'modified', 'removed'] LOOP
            IF jsonb_typeof(c -> k) IS DISTINCT FROM 'array' THEN
                PERFORM api_bad_input(fn, v_f || '.' || k, 'must be an array',
                    left((c -> k)::text, 101));
            END IF;
            IF jsonb_array_length(c -> k) > 3000 THEN
                PERFORM api_bad_input(fn, v_f || '.' || k,
                    'must hold at most 3000 paths',
                    jsonb_array_length(c -> k)::text || ' paths');
            END IF;
            IF jsonb_path_exists(c -> k,
                'lax $[*] ? (@.type() != "string" || @ == "")') THEN
                PERFORM api_bad_input(fn, v_f || '.' || k,
                    'must hold non-empty strings only', left((c -> k)::text, 101));
            END IF;
            -- no path is longer than the list's JSON text: most lists need
            -- no look at each path
            v_path := NULL;
            IF length((c -> k)::text) > 4096 THEN
                SELECT e.p INTO v_path
                FROM jsonb_array_elements_text(c -> k) AS e (p)
                WHERE length(e.p) > 4096
                LIMIT 1;
            END IF;
            IF v_path IS NOT NULL THEN
                PERFORM api_bad_input(fn, v_f || '.' || k,
                    'must hold paths of at most 4096 characters',
                    left(v_path, 101));
            END IF;
        END LOOP;
        IF jsonb_typeof(c -> 'timestamp') IS DISTINCT FROM 'string'
            OR c ->> 'timestamp' !~ ts_re THEN
            PERFORM api_bad_input(fn, v_f || '.timestamp',
                'must be an ISO 8601 timestamp string',
                left((c -> 'timestamp')::text, 101));
        END IF;
    END LOOP;
    IF v_n > 0 AND NOT p_head_sha = ANY(v_shas) THEN
        PERFORM api_bad_input(fn, 'p_head_sha', 'must be one of p_commits',
            p_head_sha);
    END IF;
    IF v_n = 0 THEN
        v_shas := ARRAY[p_head_sha];
    END IF;

    -- 2. resolution and serialisation ------------------------------------------
    v_session := resolve_lab_session(p_provider_repo_id, p_repo_url);
    IF v_session IS NOT NULL THEN
        PERFORM lab_attempt_session_lock(v_session);
        SELECT s."userId", pg_catalog.format('%s', s."status") INTO v_user, v_status
        FROM public."LabSession" AS s
        WHERE s."id" = v_session
        FOR SHARE;
    END IF;

    -- 3. redelivery --------------------------------------------------------------
    SELECT d.*, s."userId" AS "userId" INTO v_del
    FROM public."GitHubPushDelivery" AS d
    INNER JOIN public."LabSession" AS s ON d."sessionId" = s."id"
    WHERE d."deliveryId" = p_delivery_id;
    IF FOUND THEN
        IF v_del."headSha" <> p_head_sha OR v_del."branch" <> v_branch THEN
            PERFORM api_bad_input(fn, 'p_delivery_id',
                'was already recorded for another ref or head SHA',
                p_delivery_id);
        END IF;
        INSERT INTO public."AuditLog" ("id", "userId", "action", "metadata", "actorId")
        VALUES (
            gen_random_uuid(), v_del."userId", 'PUSH_DUPLICATE_DELIVERY',
            jsonb_build_object('deliveryId', p_delivery_id,
                'sessionId', v_del."sessionId",
                'providerRepoId', p_provider_repo_id, 'repoUrl', v_url,
                'branch', v_branch, 'headSha', p_head_sha),
            'github-webhook'
        );
        RETURN QUERY
        SELECT
            u.sha, a."id", false,
            CASE WHEN u.sha = p_head_sha THEN v_del."verificationJobId" END,
            'duplicate'::text
        FROM unnest(v_shas) WITH ORDINALITY AS u (sha, n)
        LEFT JOIN public."LabAttempt" AS a
            ON a."sessionId" = v_del."sessionId" AND a."commitSha" = u.sha
        ORDER BY u.n;
        RETURN;
    END IF;

    -- 4. rejection ---------------------------------------------------------------
    IF v_session IS NULL OR NOT lab_status_is_active(v_status) THEN
        IF v_session IS NULL THEN
            -- the repository id and the URL name two different active sessions
            SELECT m."sessionId" INTO v_by_id
            FROM public."GitHubRepoMapping" AS m
            INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
            WHERE
                m."providerRepoId" = p_provider_repo_id
                AND m."sessionActive" AND lab_status_is_active(pg_catalog.format('%s', s."status"))
            LIMIT 1;
            SELECT m."sessionId" INTO v_by_url
            FROM public."GitHubRepoMapping" AS m
            INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
            WHERE
                m."repoUrl" = v_url
                AND m."sessionActive" AND lab_status_is_active(pg_catalog.format('%s', s."status"))
                AND (m."providerRepoId" IS NULL OR m."providerRepoId" = p_provider_repo_id)
            LIMIT 1;
        END IF;
        IF v_by_id IS NOT NULL AND v_by_url IS NOT NULL AND v_by_id <> v_by_url THEN
            INSERT INTO public."AuditLog" (
                "id", "userId", "action", "metadata", "actorId"
            )
            VALUES (
                gen_random_uuid(), NULL, 'PUSH_REJECTED',
                jsonb_build_object('deliveryId', p_delivery_id,
                    'providerRepoId', p_provider_repo_id, 'repoUrl', v_url,
                    'branch', v_branch, 'headSha', p_head_sha,
                    'sessionId', NULL,
                    'conflictingSessions', jsonb_build_object(
                        'byProviderRepoId', v_by_id, 'byRepoUrl', v_by_url),
                    'reason', format(
                        'repository id %s is bound to session %s but %s to session %s: recorded in neither',
                        p_provider_repo_id, v_by_id, v_url, v_by_url),
                    'sqlstate', 'FL003'),
                'github-webhook'
            );
            RETURN QUERY
            SELECT u.sha, NULL::uuid, false, NULL::uuid, 'rejected'::text
            FROM unnest(v_shas) WITH ORDINALITY AS u (sha, n)
            ORDER BY u.n;
            RETURN;
        END IF;
        IF v_session IS NULL THEN
            SELECT m."sessionId", s."userId", pg_catalog.format('%s', s."status")
            INTO v_session, v_user, v_status
            FROM public."GitHubRepoMapping" AS m
            INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
            WHERE m."providerRepoId" = p_provider_repo_id OR m."repoUrl" = v_url
            ORDER BY m."providerRepoId" = p_provider_repo_id DESC NULLS LAST,
                m."createdAt" DESC
            LIMIT 1;
        END IF;
        v_reason := CASE
            WHEN v_session IS NULL THEN 'no session is bound to the repository'
            WHEN NOT lab_status_is_active(v_status)
                THEN format('session %s is %s', v_session, v_status)
            ELSE format('session %s is bound to another repository id', v_session)
        END;
        INSERT INTO public."AuditLog" ("id", "userId", "action", "metadata", "actorId")
        VALUES (
            gen_random_uuid(), v_user, 'PUSH_REJECTED',
            jsonb_build_object('deliveryId', p_delivery_id,
                'providerRepoId', p_provider_repo_id, 'repoUrl', v_url,
                'branch', v_branch, 'headSha', p_head_sha,
                'sessionId', v_session, 'reason', v_reason, 'sqlstate', 'FL003'),
            'github-webhook'
        );
        RETURN QUERY
        SELECT u.sha, NULL::uuid, false, NULL::uuid, 'rejected'::text
        FROM unnest(v_shas) WITH ORDINALITY AS u (sha, n)
        ORDER BY u.n;
        RETURN;
    END IF;

    -- 5. recording ---------------------------------------------------------------
    IF v_n = 0 THEN
        SELECT a."id" INTO v_head
        FROM public."LabAttempt" AS a
        WHERE a."sessionId" = v_session AND a."commitSha" = p_head_sha;
        IF NOT FOUND THEN
            PERFORM api_bad_input(fn, 'p_commits',
                'is empty but p_head_sha is not a recorded commit of the session',
                p_head_sha);
        END IF;
        r_sha := ARRAY[p_head_sha];
        r_id := ARRAY[v_head];
        r_new := ARRAY[false];
        r_out := ARRAY['existing'];
    END IF;
    IF v_n > 0 THEN
        -- one INSERT of every commit the session does not hold yet, in push
        -- order: the chain trigger links them in that order under the one
        -- session lock taken above (its re-entrant lock costs no wait); the
        -- commits already recorded keep their rows
        WITH inp AS (
            SELECT e.c, e.n, e.c ->> 'id' AS sha
            FROM jsonb_array_elements(p_commits) WITH ORDINALITY AS e (c, n)
        ),

        old AS (
            SELECT
                i.n,
                a."id"
            FROM inp AS i
            INNER JOIN public."LabAttempt" AS a
                ON a."sessionId" = v_session AND a."commitSha" = i.sha
        ),

        ins AS (
            INSERT INTO public."LabAttempt" (
                "sessionId", "commitSha", "deliveryId", "branch", "authorName",
                "authorEmail", "authorLogin", "changedFiles", "pushedAt",
                "chainSeq", "prevHash", "rowHash"
            )
            SELECT
                v_session, i.sha, p_delivery_id, v_branch,
                i.c -> 'author' ->> 'name', i.c -> 'author' ->> 'email',
                i.c -> 'author' ->> 'username',
                jsonb_build_object('added', i.c -> 'added',
                    'modified', i.c -> 'modified', 'removed', i.c -> 'removed'),
                p_pushed_at AT TIME ZONE 'UTC',
                0, '\x'::bytea, '\x'::bytea
            FROM inp AS i
            WHERE NOT EXISTS (SELECT 1 FROM old AS o WHERE o.n = i.n)
            ORDER BY i.n
            RETURNING "id", "commitSha", "chainSeq", "rowHash"
        )

        SELECT
            array_agg(i.sha ORDER BY i.n),
            array_agg(coalesce(x."id", o."id") ORDER BY i.n),
            array_agg(x."id" IS NOT NULL ORDER BY i.n),
            array_agg(CASE WHEN x."id" IS NOT NULL THEN 'recorded' ELSE 'existing' END
                ORDER BY i.n),
            coalesce(jsonb_agg(jsonb_build_object('id', x."id",
                'commitSha', i.sha, 'chainSeq', x."chainSeq",
                'rowHash', encode(x."rowHash", 'hex')) ORDER BY i.n)
                FILTER (WHERE x."id" IS NOT NULL), '[]'),
            (array_agg(coalesce(x."id", o."id")) FILTER (WHERE i.sha = p_head_sha))[1]
        INTO r_sha, r_id, r_new, r_out, v_anchors, v_head
        FROM inp AS i
        LEFT JOIN ins AS x ON i.sha = x."commitSha"
        LEFT JOIN old AS o ON i.n = o.n;
    END IF;

    IF p_provider_repo_id IS NOT NULL THEN
        UPDATE public."GitHubRepoMapping" AS m
        SET "providerRepoId" = p_provider_repo_id
        WHERE
            m."sessionId" = v_session AND m."providerRepoId" IS NULL
            AND NOT EXISTS (
                SELECT 1 FROM public."GitHubRepoMapping" AS o
                WHERE
                    o."providerRepoId" = p_provider_repo_id
                    AND o."sessionId" <> v_session AND o."sessionActive"
            );
    END IF;

    v_job := enqueue_verification_job(v_head);

    INSERT INTO public."GitHubPushDelivery" (
        "deliveryId", "sessionId", "branch", "headSha", "verificationJobId"
    )
    VALUES (p_delivery_id, v_session, v_branch, p_head_sha, v_job);

    INSERT INTO public."AuditLog" ("id", "userId", "action", "metadata", "actorId")
    VALUES (
        gen_random_uuid(), v_user, 'PUSH_RECORDED',
        jsonb_build_object('deliveryId', p_delivery_id, 'sessionId', v_session,
            'providerRepoId', p_provider_repo_id, 'repoUrl', v_url,
            'branch', v_branch, 'headSha', p_head_sha,
            'headLabAttemptId', v_head, 'verificationJobId', v_job,
            'created', jsonb_array_length(v_anchors),
            'existing', cardinality(r_sha) - jsonb_array_length(v_anchors),
            'attempts', v_anchors),
        'github-webhook'
    );

    RETURN QUERY
    SELECT
        u.sha, u.id, u.is_new,
        CASE WHEN u.sha = p_head_sha THEN v_job END,
        u.outcome
    FROM unnest(r_sha, r_id, r_new, r_out) WITH ORDINALITY
        AS u (sha, id, is_new, outcome, n)
    ORDER BY u.n;
END;
$$;

REVOKE ALL ON FUNCTION record_push(
    text, bigint, text, text, text, timestamptz, jsonb
) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION record_push(
    text, bigint, text, text, text, timestamptz, jsonb
) TO forgea_app;

CREATE FUNCTION claim_verification_job(p_worker_id text, p_lease interval)
RETURNS TABLE (
    "id" uuid,
    "labAttemptId" uuid,
    "sessionId" uuid,
    "commitSha" text,
    "labVersionId" uuid,
    "status" "VerificationJobStatus",
    "runCount" integer,
    "leaseOwner" text,
    "leaseExpiresAt" timestamp(3),
    "createdAt" timestamp(3),
    "startedAt" timestamp(3),
    "completedAt" timestamp(3),
    "exitCode" integer,
    "errorMessage" text,
    "leaseToken" uuid
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET lock_timeout = '5s'
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamp(3) := timezone('UTC', clock_timestamp());
    v_id uuid;
    v_token uuid := gen_random_uuid();
    v_kept text[];
BEGIN
    IF p_worker_id IS NULL OR length(p_worker_id) NOT BETWEEN 1 AND 200
        OR p_worker_id ~ '[[:cntrl:]]' THEN
        PERFORM api_bad_input('claim_verification_job', 'p_worker_id',
            'must be 1-200 printable characters', p_worker_id);
    END IF;
    IF p_lease IS NULL OR p_lease < interval '1 second'
        OR p_lease > interval '1 day' THEN
        PERFORM api_bad_input('claim_verification_job', 'p_lease',
            'must be between 1 second and 1 day', p_lease::text);
    END IF;

    SELECT j."id" INTO v_id
    FROM public."VerificationJob" AS j
    WHERE
        j."status" OPERATOR(pg_catalog.=) 'QUEUED'
        AND NOT EXISTS (
            SELECT 1 FROM public."VerificationJob" AS r
            WHERE r."sessionId" = j."sessionId" AND r."status" OPERATOR(pg_catalog.=) 'RUNNING'
        )
        AND NOT EXISTS (
            SELECT 1 FROM public."VerificationJob" AS o
            WHERE
                o."sessionId" = j."sessionId"
                AND o."status" OPERATOR(pg_catalog.=) 'QUEUED'
                AND (o."createdAt", o."id") < (j."createdAt", j."id")
        )
    ORDER BY j."createdAt", j."id"
    LIMIT 1
    FOR UPDATE SKIP LOCKED;

    IF v_id IS NULL THEN
        RETURN;
    END IF;

    UPDATE public."VerificationJob" AS j
    SET
        "status" = 'RUNNING',
        "runCount" = j."runCount" + 1,
        "leaseOwner" = p_worker_id,
        "leaseExpiresAt" = v_now + p_lease,
        "startedAt" = coalesce(j."startedAt", v_now),
        "leaseTokenHash" = sha256(convert_to(v_token::text, 'UTF8'))
    WHERE j."id" = v_id;

    -- this connection's own copy: complete_verification_job() without
    -- p_lease_token on the claiming connection (the 32 newest claims)
    v_kept := ARRAY(
        SELECT e.entry
        FROM unnest(string_to_array(
            coalesce(current_setting('forgea.lease_tokens', true), ''), ','
        )) WITH ORDINALITY AS e (entry, n)
        -- '<36 of [0-9a-f-]>:<36 of [0-9a-f-]>', tested without a counted
        -- repetition ({36} costs the regex engine ~50 times more)
        WHERE length(e.entry) = 73 AND substr(e.entry, 37, 1) = ':'
            AND e.entry ~ '^[0-9a-f-]+:[0-9a-f-]+$'
            AND NOT starts_with(e.entry, v_id::text)
        ORDER BY e.n
    ) || (v_id::text || ':' || v_token::text);
    PERFORM set_config('forgea.lease_tokens', array_to_string(
        v_kept[greatest(1, cardinality(v_kept) - 31):], ','), false);

    RETURN QUERY
    SELECT
        j."id", j."labAttemptId", j."sessionId", j."commitSha",
        j."labVersionId", j."status", j."runCount", j."leaseOwner",
        j."leaseExpiresAt", j."createdAt", j."startedAt", j."completedAt",
        j."exitCode", j."errorMessage", v_token
    FROM public."VerificationJob" AS j
    WHERE j."id" = v_id;
END;
$$;

COMMENT ON FUNCTION claim_verification_job(text, interval) IS
'Claim the next verification job (V0019); returns the job and the lease token of this run (V0017).';

REVOKE ALL ON FUNCTION claim_verification_job(text, interval) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION claim_verification_job(text, interval)
TO forgea_worker;

CREATE FUNCTION complete_verification_job(
    p_job_id uuid,
    p_worker_id text,
    p_status "VerificationJobStatus",
    p_exit_code integer,
    p_logs jsonb,
    p_lease_token uuid DEFAULT NULL,
    p_attestation_signature bytea DEFAULT NULL,
    p_attestation_key_id text DEFAULT NULL,
    p_completed_at timestamptz DEFAULT NULL
)
RETURNS SETOF "VerificationJob"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    v_job public."VerificationJob";
    v_now timestamp(3) := timezone('UTC', clock_timestamp());
    v_token uuid := p_lease_token;
    v_list text;
    v_key text := p_job_id::text || ':';
    v_off integer := 0;
    v_pos integer;
    v_cand text;
    v_completed timestamp(3);
BEGIN
    IF p_worker_id IS NULL OR length(p_worker_id) NOT BETWEEN 1 AND 200
        OR p_worker_id ~ '[[:cntrl:]]' THEN
        PERFORM api_bad_input('complete_verification_job', 'p_worker_id',
            'must be 1-200 printable characters', p_worker_id);
    END IF;
    IF p_status IS NULL
        OR NOT p_status OPERATOR(pg_catalog.=) ANY ('{PASSED,FAILED,ERROR}') THEN
        PERFORM api_bad_input('complete_verification_job', 'p_status',
            'must be PASSED, FAILED or ERROR', p_status::text);
    END IF;
    IF p_logs IS NOT NULL AND jsonb_typeof(p_logs) <> 'object' THEN
        PERFORM api_bad_input('complete_verification_job', 'p_logs',
            'must be a JSON object', jsonb_typeof(p_logs));
    END IF;
    IF octet_length(p_logs::text) > 16 * 1024 * 1024 THEN
        PERFORM api_bad_input('complete_verification_job', 'p_logs',
            'must be at most 16 MiB', octet_length(p_logs::text) || ' bytes');
    END IF;
    IF jsonb_path_exists(p_logs, 'strict $.**{65 to last}') THEN
        PERFORM api_bad_input('complete_verification_job', 'p_logs',
            'must nest at most 64 levels deep', left(p_logs::text, 101));
    END IF;
    IF p_exit_code NOT BETWEEN -255 AND 255 THEN
        PERFORM api_bad_input('complete_verification_job', 'p_exit_code',
            'must be between -255 and 255 (a process exit status or minus a signal)',
            p_exit_code::text);
    END IF;
    -- the worker's attestation (docs/security.md): stored, never verified here
    IF (p_attestation_signature IS NULL) <> (p_attestation_key_id IS NULL) THEN
        PERFORM api_bad_input('complete_verification_job',
            CASE WHEN p_attestation_key_id IS NULL
                THEN 'p_attestation_key_id' ELSE 'p_attestation_signature' END,
            'must be given together with the other attestation argument', NULL);
    END IF;
    IF octet_length(p_attestation_signature) <> 64 THEN
        PERFORM api_bad_input('complete_verification_job', 'p_attestation_signature',
            'must be an Ed25519 signature of 64 bytes',
            octet_length(p_attestation_signature) || ' bytes');
    END IF;
    IF p_attestation_key_id !~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' THEN
        PERFORM api_bad_input('complete_verification_job', 'p_attestation_key_id',
            'must be 1-128 of [A-Za-z0-9._:-], starting with a letter or digit',
            p_attestation_key_id);
    END IF;
    IF p_attestation_signature IS NOT NULL AND p_completed_at IS NULL THEN
        PERFORM api_bad_input('complete_verification_job', 'p_completed_at',
            'must be the completion time the attestation signs', NULL);
    END IF;
    IF date_trunc('milliseconds', p_completed_at) <> p_completed_at THEN
        PERFORM api_bad_input('complete_verification_job', 'p_completed_at',
            'must have at most millisecond precision (it is stored and signed as is)',
            p_completed_at::text);
    END IF;
    IF p_attestation_signature IS NOT NULL AND p_logs ? 'job' THEN
        PERFORM api_bad_input('complete_verification_job', 'p_logs',
            'must not have a top-level "job" member in an attested completion (the database writes it)',
            left(p_logs ->> 'job', 101));
    END IF;
    v_completed := timezone('UTC', p_completed_at);

    SELECT * INTO v_job
    FROM public."VerificationJob" AS j
    WHERE j."id" = p_job_id
    FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM api_bad_input('complete_verification_job', 'p_job_id',
            'must be the id of a VerificationJob', p_job_id::text);
    END IF;
    IF v_job."status" OPERATOR(pg_catalog.<>) 'RUNNING' THEN
        RAISE EXCEPTION
            'complete_verification_job: job % is %, not RUNNING',
            p_job_id, v_job."status"
            USING ERRCODE = 'FQ001';
    END IF;
    IF v_job."leaseOwner" IS DISTINCT FROM p_worker_id THEN
        RAISE EXCEPTION
            'complete_verification_job: worker % does not hold the lease of job %',
            coalesce(quote_literal(left(p_worker_id, 60)), 'NULL'), p_job_id
            USING ERRCODE = 'FQ002';
    END IF;
    IF v_job."leaseTokenHash" IS NOT NULL THEN
        IF v_token IS NULL THEN
            -- the leftmost '<job id>:' followed by 36 of [0-9a-f-] in this
            -- connection's list (what substring(... FROM '<job id>:([0-9a-f-]{36})')
            -- found, without compiling a new regular expression per job)
            v_list := current_setting('forgea.lease_tokens', true);
            LOOP
                v_pos := strpos(substr(v_list, v_off + 1), v_key);
                EXIT WHEN v_pos IS NULL OR v_pos = 0;
                v_off := v_off + v_pos;
                v_cand := substr(v_list, v_off + length(v_key), 36);
                IF length(v_cand) = 36 AND v_cand ~ '^[0-9a-f-]+$' THEN
                    v_token := v_cand::uuid;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        IF v_token IS NULL THEN
            RAISE EXCEPTION
                'complete_verification_job: no lease token for run % of job % (pass p_lease_token, the leaseToken claim_verification_job returned)',
                v_job."runCount", p_job_id
                USING ERRCODE = 'FQ002';
        END IF;
        IF sha256(convert_to(v_token::text, 'UTF8')) <> v_job."leaseTokenHash" THEN
            RAISE EXCEPTION
                'complete_verification_job: lease token % is not the token of run % of job % (a stale run or another worker)',
                quote_literal(left(v_token::text, 8) || '...'), v_job."runCount", p_job_id
                USING ERRCODE = 'FQ002';
        END IF;
    END IF;
    IF v_job."leaseExpiresAt" < v_now THEN
        RAISE EXCEPTION
            'complete_verification_job: the lease of worker % on job % expired at %',
            quote_literal(left(p_worker_id, 60)), p_job_id, v_job."leaseExpiresAt"
            USING ERRCODE = 'FQ002';
    END IF;
    -- a minute of clock skew either way between the worker and the database
    IF v_completed < v_job."startedAt" - interval '1 minute'
        OR v_completed > v_now + interval '1 minute' THEN
        PERFORM api_bad_input('complete_verification_job', 'p_completed_at',
            format('must lie between the job''s start - 1 minute (%s) and the database clock + 1 minute (%s)',
                v_job."startedAt" - interval '1 minute', v_now + interval '1 minute'),
            v_completed::text);
    END IF;

    UPDATE public."VerificationJob" AS j
    SET
        "status" = p_status,
        "completedAt" = coalesce(v_completed, v_now),
        "exitCode" = p_exit_code,
        "attestationSignature" = p_attestation_signature,
        "attestationKeyId" = p_attestation_key_id,
        "errorMessage" = CASE
            WHEN p_status OPERATOR(pg_catalog.=) 'ERROR'
                THEN left(coalesce(p_logs ->> 'error', 'worker reported ERROR'), 2000)
        END
    WHERE j."id" = p_job_id
    RETURNING j.* INTO v_job;

    IF p_status OPERATOR(pg_catalog.=) ANY ('{PASSED,FAILED}') THEN
        INSERT INTO public."VerificationAttempt" (
            "sessionId", "commitSha", "result", "logs", "verificationJobId"
        )
        VALUES (
            v_job."sessionId",
            v_job."commitSha",
            CASE
                WHEN p_status OPERATOR(pg_catalog.=) 'PASSED'
                    THEN 'PASS'::public."VerificationResult"
                ELSE 'FAIL'::public."VerificationResult"
            END,
            coalesce(p_logs, '{}'::jsonb) || jsonb_build_object(
                'job', jsonb_build_object(
                    'id', v_job."id",
                    'runCount', v_job."runCount",
                    'worker', v_job."leaseOwner",
                    'exitCode', p_exit_code
                )
            ),
            v_job."id"
        );
    END IF;

    IF p_status OPERATOR(pg_catalog.=) 'PASSED' THEN
        UPDATE public."LabSession" AS s
        SET "status" = 'VERIFIED_PASS'
        WHERE
            s."id" = v_job."sessionId"
            AND s."status" OPERATOR(pg_catalog.=) ANY ('{IN_PROGRESS,STUCK}');
    END IF;

    RETURN NEXT v_job;
END;
$$;

REVOKE ALL ON FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb, uuid, bytea, text, timestamptz
) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb, uuid, bytea, text, timestamptz
) TO forgea_worker;

CREATE FUNCTION requeue_expired_verification_jobs()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    v_now timestamp(3) := timezone('UTC', clock_timestamp());
    v_job record;
    v_count integer := 0;
BEGIN
    FOR v_job IN
        SELECT j."id", j."runCount", j."leaseOwner"
        FROM public."VerificationJob" AS j
        WHERE j."status" OPERATOR(pg_catalog.=) 'RUNNING' AND j."leaseExpiresAt" < v_now
        ORDER BY j."leaseExpiresAt"
        FOR UPDATE SKIP LOCKED
    LOOP
        IF v_job."runCount" < 3 THEN
            UPDATE public."VerificationJob" AS j
            SET "status" = 'QUEUED', "leaseOwner" = NULL, "leaseExpiresAt" = NULL
            WHERE j."id" = v_job."id";
            PERFORM pg_notify('verification_job_queued', v_job."id"::text);
        ELSE
            UPDATE public."VerificationJob" AS j
            SET
                "status" = 'ERROR',
                "completedAt" = v_now,
                "errorMessage" = format(
                    'lease expired after %s runs (last worker %s)',
                    v_job."runCount", v_job."leaseOwner"
                )
            WHERE j."id" = v_job."id";
        END IF;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END;
$$;

REVOKE ALL ON FUNCTION requeue_expired_verification_jobs() FROM PUBLIC;

GRANT EXECUTE ON FUNCTION requeue_expired_verification_jobs() TO forgea_worker;
