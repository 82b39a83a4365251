-- V0052__verification_job_lease_token: a completion must present its run's lease token
--
-- What:
--   * "VerificationJob"."leaseTokenHash" bytea NULL: SHA-256 of the lease token
--     of the job's latest run (NULL for jobs never claimed since this file).
--     Readers see only the hash; the token itself is never stored.
--   * claim_verification_job(p_worker_id, p_lease) now returns the claimed
--     job's columns (as before, without leaseTokenHash) plus "leaseToken" uuid:
--     a fresh random token per run (gen_random_uuid(), 122 random bits), whose
--     hash it stores. It also keeps the token in the claiming connection's own
--     setting forgea.lease_tokens (session-level, '<job id>:<token>' entries,
--     the 32 newest), so that a worker that completes on the connection it
--     claimed on needs nothing new.
--   * complete_verification_job(p_job_id, p_worker_id, p_status, p_exit_code,
--     p_logs, p_lease_token uuid DEFAULT NULL): CONTRACT's five-argument call
--     still resolves here. Besides the lease owner and expiry checks, the
--     token of the job's current run must be presented: p_lease_token, or, when
--     it is NULL, the token the calling connection's claim kept. A missing or
--     different token (another worker login that read "leaseOwner", a late
--     completion of an earlier run after the job was requeued and claimed
--     again, even under the same worker id) -> FQ002, naming the job and its
--     current run number. Nothing is written. Jobs still RUNNING from a claim
--     made before this file (leaseTokenHash NULL) keep the old rule (lease
--     owner and expiry) until their lease ends.
--   Behind a connection pooler in transaction mode, connections are shared
--   between clients: such workers must pass p_lease_token explicitly.
--   After a preserving rollback the archived hashes
--   (forgea_archive."VerificationJob_lease_token_V0052_<time>") are put back by
--   job id, with V0041's transition guard disabled inside this transaction only
--   (the guard refuses any UPDATE that is not a state move; nobody else can see
--   the table while ADD COLUMN's ACCESS EXCLUSIVE lock is held). A job missing
--   from the table refuses (FM003, naming it; nothing changed).
-- Why: any forgea_worker login could complete another worker's job by reading
--   "leaseOwner", and a stale run could complete a re-claimed job.
-- Locks: ADD COLUMN (nullable, no default) takes ACCESS EXCLUSIVE on
--   "VerificationJob" for an instant (catalog only, no rewrite, no scan); with
--   an archive to restore, held while the archived jobs are updated.
-- Rollback: restores V0042's claim and complete (bodies byte for byte, same
--   grants) and drops the column: jobs RUNNING at that moment fall back to the
--   lease-owner rule; no row is lost.

ALTER TABLE "VerificationJob" ADD COLUMN "leaseTokenHash" BYTEA;

ALTER TABLE "VerificationJob"
DISABLE TRIGGER verificationjob_transition_guard;

SELECT forgea_archive_restore_columns(
    '"VerificationJob"', 'VerificationJob_lease_token', 'V0052',
    ARRAY['leaseTokenHash']
);

ALTER TABLE "VerificationJob"
ENABLE ALWAYS TRIGGER verificationjob_transition_guard;

COMMENT ON COLUMN "VerificationJob"."leaseTokenHash" IS
'SHA-256 of the lease token claim_verification_job handed to the latest run (V0052).';

DROP FUNCTION claim_verification_job(text, interval);

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
        WHERE e.entry ~ '^[0-9a-f-]{36}:[0-9a-f-]{36}$'
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
'Claim the next verification job (V0042); returns the job and the lease token of this run (V0052).';

REVOKE ALL ON FUNCTION claim_verification_job(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_verification_job(text, interval)
TO forgea_worker;

DROP FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb
);

CREATE FUNCTION complete_verification_job(
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
            v_token := substring(
                current_setting('forgea.lease_tokens', true)
                FROM p_job_id::text || ':([0-9a-f-]{36})'
            )::uuid;
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

REVOKE ALL ON FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb, uuid
) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb, uuid
) TO forgea_worker;
