-- V0041__verification_job_guards: the job state machine and the road to PASS
--
-- What:
--   * verificationjob_transition_guard (BEFORE INSERT OR UPDATE OR DELETE on
--     "VerificationJob", ALWAYS), function verification_job_transition_guard():
--       INSERT  only as a fresh QUEUED job (no runs, lease, result or times) on
--               the session's current version                      (FQ001)
--       DELETE  never                                              (FA001)
--       id, labAttemptId, sessionId, commitSha, labVersionId and createdAt
--               never change                                       (FA002)
--       moves   QUEUED -> RUNNING          (one more run, a lease)
--               RUNNING -> PASSED | FAILED | ERROR   inside
--                          complete_verification_job() (which marks the job
--                          it completes in the transaction-local setting
--                          forgea.completing_job after checking the caller
--                          holds the lease), before the lease expires
--               RUNNING -> ERROR           (lease expired after the 3rd run)
--               RUNNING -> QUEUED          (lease expired, runs remain)
--               terminal -> nothing; anything else                 (FQ001)
--   * verificationjob_no_truncate: TRUNCATE refused (FA001), ALWAYS.
--   * verification_attempt_insert_guard() (from V0010) is replaced: besides the
--     copies of legacy "VerificationLog" rows, an attempt may now be inserted
--     only for a job that has just reached the matching terminal status
--     (PASSED -> PASS, FAILED -> FAIL) with the same session and commit, and at
--     most once per job (UNIQUE "verificationJobId"). A job reaches PASSED only
--     from RUNNING, under an unexpired lease, inside complete_verification_job,
--     so a PASS attempt, and with it VERIFIED_PASS (FL002), is the result of a
--     lease holder's completion.
--   Trust boundary, stated plainly: only the owner can write these tables at all
--   (GRANTs), and the API functions check who holds the lease. A plain UPDATE by
--   the owner is refused; an owner who deliberately imitates the API (sets the
--   marker) or disables the triggers can forge anything, as a table owner always
--   can in PostgreSQL. The owner's credentials belong to the DBAs, and `harness
--   verify` re-checks every invariant.
-- Why: CONTRACT section 4 (VerificationJob).
-- Locks: SHARE ROW EXCLUSIVE on "VerificationJob" (new) for an instant.
-- Rollback: drops the guards and restores V0010's attempt guard.

CREATE FUNCTION verification_job_transition_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'VerificationJob is append-only: DELETE of job % refused',
            OLD."id"
            USING ERRCODE = 'FA001';
    END IF;

    IF TG_OP = 'INSERT' THEN
        IF NEW."status" <> 'QUEUED' OR NEW."runCount" <> 0
            OR NEW."leaseOwner" IS NOT NULL OR NEW."leaseExpiresAt" IS NOT NULL
            OR NEW."startedAt" IS NOT NULL OR NEW."completedAt" IS NOT NULL
            OR NEW."exitCode" IS NOT NULL OR NEW."errorMessage" IS NOT NULL
            OR NEW."labVersionId" IS DISTINCT FROM (
                SELECT s."labVersionId" FROM public."LabSession" AS s
                WHERE s."id" = NEW."sessionId"
            ) THEN
            RAISE EXCEPTION
                'VerificationJob: INSERT of job % as % refused: a job starts QUEUED, unrun, on its session''s version',
                NEW."id", NEW."status"
                USING ERRCODE = 'FQ001';
        END IF;
        RETURN NEW;
    END IF;

    IF (NEW."id", NEW."labAttemptId", NEW."sessionId", NEW."commitSha",
        NEW."labVersionId", NEW."createdAt")
        IS DISTINCT FROM
        (OLD."id", OLD."labAttemptId", OLD."sessionId", OLD."commitSha",
        OLD."labVersionId", OLD."createdAt") THEN
        RAISE EXCEPTION
            'VerificationJob %: UPDATE of id, labAttemptId, sessionId, commitSha, labVersionId or createdAt refused',
            OLD."id"
            USING ERRCODE = 'FA002';
    END IF;

    IF OLD."status" = 'QUEUED' AND NEW."status" = 'RUNNING'
        AND NEW."runCount" = OLD."runCount" + 1 THEN
        RETURN NEW;
    ELSIF OLD."status" = 'RUNNING'
        AND NEW."status" IN ('PASSED', 'FAILED', 'ERROR')
        AND NEW."leaseOwner" IS NOT DISTINCT FROM OLD."leaseOwner"
        AND NEW."runCount" = OLD."runCount"
        AND (
            current_setting('forgea.completing_job', true) = OLD."id"::text
            AND OLD."leaseExpiresAt" >= timezone('UTC', clock_timestamp())
            OR NEW."status" = 'ERROR' AND OLD."runCount" >= 3
            AND OLD."leaseExpiresAt" < timezone('UTC', clock_timestamp())
        ) THEN
        RETURN NEW;
    ELSIF OLD."status" = 'RUNNING' AND NEW."status" = 'QUEUED'
        AND OLD."leaseExpiresAt" < timezone('UTC', clock_timestamp())
        AND OLD."runCount" < 3 AND NEW."runCount" = OLD."runCount" THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION
        'VerificationJob %: illegal transition % -> % (runCount % -> %)',
        OLD."id", OLD."status", NEW."status", OLD."runCount", NEW."runCount"
        USING ERRCODE = 'FQ001';
END;
$$;

REVOKE ALL ON FUNCTION verification_job_transition_guard() FROM PUBLIC;

CREATE OR REPLACE FUNCTION verification_attempt_insert_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF NEW."verificationJobId" IS NULL AND EXISTS (
        SELECT 1 FROM public."VerificationLog" AS vl
        WHERE
            vl."id" = NEW."id"
            AND vl."sessionId" = NEW."sessionId"
            AND vl."commitSha" = NEW."commitSha"
    ) THEN
        RETURN NEW;
    END IF;
    IF NEW."verificationJobId" IS NOT NULL AND EXISTS (
        SELECT 1 FROM public."VerificationJob" AS j
        WHERE
            j."id" = NEW."verificationJobId"
            AND j."sessionId" = NEW."sessionId"
            AND j."commitSha" = NEW."commitSha"
            AND j."status"::text
            = CASE NEW."result" WHEN 'PASS' THEN 'PASSED' ELSE 'FAILED' END
    ) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION
        'VerificationAttempt: INSERT of % (job %, result %) refused: attempts are written only by complete_verification_job()',
        NEW."id", NEW."verificationJobId", NEW."result"
        USING ERRCODE = 'FQ001';
END;
$$;

CREATE TRIGGER verificationjob_transition_guard
BEFORE INSERT OR UPDATE OR DELETE ON "VerificationJob"
FOR EACH ROW EXECUTE FUNCTION verification_job_transition_guard();

CREATE TRIGGER verificationjob_no_truncate
BEFORE TRUNCATE ON "VerificationJob"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

ALTER TABLE "VerificationJob"
ENABLE ALWAYS TRIGGER verificationjob_transition_guard,
ENABLE ALWAYS TRIGGER verificationjob_no_truncate;
