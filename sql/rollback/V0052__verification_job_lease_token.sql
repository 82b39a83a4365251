-- Rollback of V0052__verification_job_lease_token
--
-- What: puts back claim_verification_job and complete_verification_job as V0042
--   created them (bodies byte for byte, EXECUTE for forgea_worker only) and drops
--   "VerificationJob"."leaseTokenHash". Jobs RUNNING at that moment are then
--   completed under V0042's rule (lease owner and expiry). No row is lost.
--   With forgea.rollback_preserve = on, ("id", "leaseTokenHash") of every job
--   that has one is first archived to forgea_archive
--   ("VerificationJob_lease_token_V0052_<time>"); V0052 puts them back on the
--   next apply.
-- Locks: DROP COLUMN takes ACCESS EXCLUSIVE on "VerificationJob" for an instant
--   (catalog only).

DROP FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb, uuid
);
DROP FUNCTION claim_verification_job(text, interval);

DO $$
BEGIN
    IF current_setting('forgea.rollback_preserve', true) = 'on' THEN
        CREATE TEMP TABLE "VerificationJob_lease_token" ON COMMIT DROP AS
        SELECT "id", "leaseTokenHash" FROM "VerificationJob"
        WHERE "leaseTokenHash" IS NOT NULL;
        PERFORM forgea_archive_if_preserving(
            'pg_temp."VerificationJob_lease_token"', 'V0052'
        );
    END IF;
END;
$$;

ALTER TABLE "VerificationJob" DROP COLUMN "leaseTokenHash";

CREATE FUNCTION claim_verification_job(p_worker_id text, p_lease interval)
RETURNS SETOF "VerificationJob"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_now timestamp(3) := timezone('UTC', clock_timestamp());
    v_id uuid;
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

    RETURN QUERY
    UPDATE public."VerificationJob" AS j
    SET
        "status" = 'RUNNING',
        "runCount" = j."runCount" + 1,
        "leaseOwner" = p_worker_id,
        "leaseExpiresAt" = v_now + p_lease,
        "startedAt" = coalesce(j."startedAt", v_now)
    WHERE j."id" = v_id
    RETURNING j.*;
END;
$$;

REVOKE ALL ON FUNCTION claim_verification_job(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_verification_job(text, interval)
TO forgea_worker;

CREATE FUNCTION complete_verification_job(
    p_job_id uuid,
    p_worker_id text,
    p_status "VerificationJobStatus",
    p_exit_code integer,
    p_logs jsonb
)
RETURNS SETOF "VerificationJob"
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_job public."VerificationJob";
    v_now timestamp(3) := timezone('UTC', clock_timestamp());
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
    uuid, text, "VerificationJobStatus", integer, jsonb
) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION complete_verification_job(
    uuid, text, "VerificationJobStatus", integer, jsonb
) TO forgea_worker;
