-- Rollback of V0041__verification_job_guards
--
-- What: drops the job guards and restores the attempt guard of V0010 (legacy
--   copies only). No data involved.
-- Locks: SHARE ROW EXCLUSIVE on "VerificationJob", an instant.

DROP TRIGGER verificationjob_no_truncate ON "VerificationJob";
DROP TRIGGER verificationjob_transition_guard ON "VerificationJob";
DROP FUNCTION verification_job_transition_guard();

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
    RAISE EXCEPTION
        'VerificationAttempt: INSERT of % refused: attempts are written only by complete_verification_job()',
        NEW."id"
        USING ERRCODE = 'FQ001';
END;
$$;
