-- V0061__verification_job_lease_token_lookup: a claim and a completion without slow regexes
--
-- What: claim_verification_job and complete_verification_job (same signatures,
--   SECURITY DEFINER settings, grants, results and SQLSTATEs) keep their
--   connection's lease tokens (the setting forgea.lease_tokens, '<job id>:<token>'
--   entries) exactly as before, but test them without counted repetitions in
--   regular expressions:
--   claim: an entry is kept when it is 73 characters, ':' at position 37 and
--     '^[0-9a-f-]+:[0-9a-f-]+$' (the same set as '^[0-9a-f-]{36}:[0-9a-f-]{36}$':
--     the class holds no ':', so the one colon sits at 37 with 36 class
--     characters on each side).
--   complete (no p_lease_token): the token is the 36 characters after the
--     leftmost '<job id>:' that are all of [0-9a-f-], found with strpos; the
--     same match as substring(list FROM '<job id>:([0-9a-f-]{36})'), which
--     compiled a new regular expression for every job. A match that is no
--     valid uuid still fails the cast (22P02), as before.
--   Everything else is the previous definition unchanged (claim from V0052,
--   complete from V0056).
-- Why: PostgreSQL's regex engine expands {36} into 36 states per side: the
--   claim spent about 85 us per kept entry (32 entries: ~2.7 ms, most of a
--   claim on these machines) and the completion ~1.3 ms compiling its pattern;
--   measured in docs/bench-results.md.
-- Locks: none at creation (function bodies). At run time unchanged.
--   lock_timeout/statement_timeout: the harness's session settings, as for
--   every file.
-- Rollback: restores V0052's claim_verification_job and V0056's
--   complete_verification_job byte for byte. No data involved.

CREATE OR REPLACE FUNCTION claim_verification_job(p_worker_id text, p_lease interval)
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
        j."status" = 'QUEUED'
        AND NOT EXISTS (
            SELECT 1 FROM public."VerificationJob" AS r
            WHERE r."sessionId" = j."sessionId" AND r."status" = 'RUNNING'
        )
        AND NOT EXISTS (
            SELECT 1 FROM public."VerificationJob" AS o
            WHERE
                o."sessionId" = j."sessionId"
                AND o."status" = 'QUEUED'
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

CREATE OR REPLACE FUNCTION complete_verification_job(
    p_job_id uuid,
    p_worker_id text,
    p_status "VerificationJobStatus",
    p_exit_code integer,
    p_logs jsonb,
    p_lease_token uuid DEFAULT NULL
)
RETURNS SETOF "VerificationJob"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
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
BEGIN
    IF p_worker_id IS NULL OR length(p_worker_id) NOT BETWEEN 1 AND 200
        OR p_worker_id ~ '[[:cntrl:]]' THEN
        PERFORM api_bad_input('complete_verification_job', 'p_worker_id',
            'must be 1-200 printable characters', p_worker_id);
    END IF;
    IF p_status IS NULL OR p_status NOT IN ('PASSED', 'FAILED', 'ERROR') THEN
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

    SELECT * INTO v_job
    FROM public."VerificationJob" AS j
    WHERE j."id" = p_job_id
    FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM api_bad_input('complete_verification_job', 'p_job_id',
            'must be the id of a VerificationJob', p_job_id::text);
    END IF;
    IF v_job."status" <> 'RUNNING' THEN
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

    PERFORM set_config('forgea.completing_job', p_job_id::text, true);
    UPDATE public."VerificationJob" AS j
    SET
        "status" = p_status,
        "completedAt" = v_now,
        "exitCode" = p_exit_code,
        "errorMessage" = CASE
            WHEN p_status = 'ERROR'
                THEN left(coalesce(p_logs ->> 'error', 'worker reported ERROR'), 2000)
        END
    WHERE j."id" = p_job_id
    RETURNING j.* INTO v_job;
    PERFORM set_config('forgea.completing_job', '', true);

    IF p_status IN ('PASSED', 'FAILED') THEN
        INSERT INTO public."VerificationAttempt" (
            "sessionId", "commitSha", "result", "logs", "verificationJobId"
        )
        VALUES (
            v_job."sessionId",
            v_job."commitSha",
            CASE p_status WHEN 'PASSED' THEN 'PASS' ELSE 'FAIL' END
            ::public."VerificationResult",
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

    IF p_status = 'PASSED' THEN
        UPDATE public."LabSession" AS s
        SET "status" = 'VERIFIED_PASS'
        WHERE s."id" = v_job."sessionId" AND s."status" IN ('IN_PROGRESS', 'STUCK');
    END IF;

    RETURN NEXT v_job;
END;
$$;
