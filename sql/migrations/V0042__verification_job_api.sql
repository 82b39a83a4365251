-- V0042__verification_job_api: enqueue, claim, complete, requeue
--
-- What: the only way to move a verification job (CONTRACT section 5). All four
--   are SECURITY DEFINER (they write tables their callers cannot), pin
--   search_path to pg_catalog, public, pg_temp, schema-qualify every table, and
--   are executable only by the roles named below (EXECUTE revoked from PUBLIC).
--   enqueue_verification_job(p_lab_attempt_id) -> job id        forgea_app
--     Idempotent (ON CONFLICT DO NOTHING, then the existing job); concurrent
--     calls for one attempt create one job. The job takes the session's current
--     labVersionId. Refused for an unknown attempt (22023) or a session that is
--     no longer active (FL003). A new job sends
--     NOTIFY verification_job_queued, '<job id>' (delivered on commit only).
--     Replaces the placeholder of the push ledger release, so record_push now
--     enqueues the head commit in its own transaction.
--   claim_verification_job(p_worker_id, p_lease) -> the job row, or no row
--                                                                forgea_worker
--     The oldest QUEUED job whose session has no RUNNING job and no older
--     QUEUED job (a session's jobs run oldest first, one at a time), locked
--     FOR UPDATE SKIP LOCKED so concurrent workers neither block nor collide;
--     sets RUNNING, runCount + 1, the lease, startedAt on the first run.
--   complete_verification_job(p_job_id, p_worker_id, p_status, p_exit_code,
--     p_logs) -> the job row                                     forgea_worker
--     Only the lease holder, before the lease expires (FQ002); status PASSED,
--     FAILED or ERROR (22023). It marks the job it completes in the
--     transaction-local setting forgea.completing_job, which the job guard
--     (V0041) requires for RUNNING -> PASSED/FAILED/ERROR. PASSED/FAILED append the VerificationAttempt
--     (PASS/FAIL) in the same transaction; PASSED moves an IN_PROGRESS or STUCK
--     session to VERIFIED_PASS through the lifecycle guard (a DEFERRED session
--     stays DEFERRED: the guard does not allow DEFERRED -> VERIFIED_PASS; the
--     PASS attempt lets the app resume it and pass it). ERROR never creates an
--     attempt or a pass.
--   requeue_expired_verification_jobs() -> number of jobs moved  forgea_worker
--     RUNNING jobs whose lease expired go back to QUEUED while runs remain (at
--     most 3), else to ERROR with a reason; requeued jobs are NOTIFYed again.
--   Bad input is reported through api_bad_input() (V0028), as in the other API
--   functions: 22023, naming the function, the field and the value.
-- Why: CONTRACT section 5 (the job queue); procrastinate/river style SKIP LOCKED queue with leases.
-- Locks: function creation only.
-- Rollback: drops claim/complete/requeue and puts back the enqueue placeholder
--   of the push ledger release (which returns NULL).

CREATE OR REPLACE FUNCTION enqueue_verification_job(p_lab_attempt_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_attempt record;
    v_job_id uuid;
BEGIN
    SELECT a."id", a."sessionId", a."commitSha", s."labVersionId",
        s."status"::text AS "status"
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
'Enqueue the verification job of a LabAttempt (V0042). Idempotent.';

REVOKE ALL ON FUNCTION enqueue_verification_job(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION enqueue_verification_job(uuid) TO forgea_app;

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

CREATE FUNCTION requeue_expired_verification_jobs()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_now timestamp(3) := timezone('UTC', clock_timestamp());
    v_job record;
    v_count integer := 0;
BEGIN
    FOR v_job IN
        SELECT j."id", j."runCount", j."leaseOwner"
        FROM public."VerificationJob" AS j
        WHERE j."status" = 'RUNNING' AND j."leaseExpiresAt" < v_now
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
