-- resolve_lab_session() and record_push() as the pre-release chain first shipped
-- them (its V0028 and V0030; history in git): a repository id bound to one
-- active session let a push for another session's URL be recorded in the first
-- (the capture). Kept as test data: tests/test_verify.py installs them to plant
-- what a database that ran them holds, and proves that verify names it.

CREATE OR REPLACE FUNCTION resolve_lab_session(p_provider_repo_id bigint, p_repo_url text)
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

CREATE OR REPLACE FUNCTION record_push(
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
AS $$
#variable_conflict use_column
DECLARE
    fn constant text := 'record_push';
    sha_re constant text := '^[0-9a-f]{40}([0-9a-f]{24})?$';
    ts_re constant text :=
        '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$';
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
    v_del record;
    v_att record;
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
    IF p_provider_repo_id <= 0 THEN
        PERFORM api_bad_input(fn, 'p_provider_repo_id', 'must be positive',
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
    IF p_head_sha IS NULL OR p_head_sha !~ sha_re THEN
        PERFORM api_bad_input(fn, 'p_head_sha',
            'must be 40 or 64 lowercase hex characters', p_head_sha);
    END IF;
    IF p_pushed_at IS NULL OR NOT isfinite(p_pushed_at) THEN
        PERFORM api_bad_input(fn, 'p_pushed_at', 'must be a finite timestamp',
            p_pushed_at::text);
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
        IF jsonb_typeof(c -> 'id') IS DISTINCT FROM 'string' OR v_sha !~ sha_re THEN
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
        SELECT s."userId", s."status"::text INTO v_user, v_status
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
            SELECT m."sessionId", s."userId", s."status"::text
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
    FOR i IN 0 .. v_n - 1 LOOP
        c := p_commits -> i;
        SELECT a."id", false AS is_new INTO v_att
        FROM public."LabAttempt" AS a
        WHERE a."sessionId" = v_session AND a."commitSha" = c ->> 'id';
        IF NOT FOUND THEN
            INSERT INTO public."LabAttempt" (
                "sessionId", "commitSha", "deliveryId", "branch", "authorName",
                "authorEmail", "authorLogin", "changedFiles", "pushedAt",
                "chainSeq", "prevHash", "rowHash"
            )
            VALUES (
                v_session, c ->> 'id', p_delivery_id, v_branch,
                c -> 'author' ->> 'name', c -> 'author' ->> 'email',
                c -> 'author' ->> 'username',
                jsonb_build_object('added', c -> 'added',
                    'modified', c -> 'modified', 'removed', c -> 'removed'),
                p_pushed_at AT TIME ZONE 'UTC',
                0, '\x', '\x'
            )
            RETURNING "id", true AS is_new, "chainSeq", "rowHash" INTO v_att;
            v_anchors := v_anchors || jsonb_build_object('id', v_att."id",
                'commitSha', c ->> 'id', 'chainSeq', v_att."chainSeq",
                'rowHash', encode(v_att."rowHash", 'hex'));
        END IF;
        IF c ->> 'id' = p_head_sha THEN
            v_head := v_att."id";
        END IF;
        r_sha := r_sha || (c ->> 'id');
        r_id := r_id || v_att."id";
        r_new := r_new || v_att.is_new;
        r_out := r_out || CASE WHEN v_att.is_new THEN 'recorded' ELSE 'existing' END;
    END LOOP;

    IF p_provider_repo_id IS NOT NULL THEN
        UPDATE public."GitHubRepoMapping" AS m
        SET "providerRepoId" = p_provider_repo_id
        WHERE m."sessionId" = v_session AND m."providerRepoId" IS NULL;
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
