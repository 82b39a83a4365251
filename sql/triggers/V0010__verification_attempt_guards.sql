-- V0010__verification_attempt_guards: VerificationAttempt cannot be forged or edited
--
-- What:
--   * verificationattempt_append_only / verificationattempt_no_truncate:
--     UPDATE, DELETE and TRUNCATE refused for everyone, owner included (FA001).
--   * verificationattempt_insert_guard: an attempt must come from somewhere.
--     A row without a verification job must be the copy of a "VerificationLog"
--     row (same id, session and commit): that is how V0013 migrates the legacy
--     results. A row with a job is refused here; V0041 (the job queue) replaces
--     this function so that only a completed job can produce its attempt.
--     Refusals raise FQ001. Privileges already keep forgea_app and
--     forgea_worker from inserting at all; this guard stops the owner too.
--   * verificationlog_frozen: INSERT into the legacy "VerificationLog" is
--     refused for everyone, owner included (FA001). V0009 took INSERT away
--     from forgea_app; this closes the owner's road too, which would otherwise
--     let a new log row be "copied" into a PASS attempt.
--   All four fire ALWAYS (also under session_replication_role = replica).
-- Locks: SHARE ROW EXCLUSIVE on "VerificationAttempt" (new, empty) and on
--   "VerificationLog" (no scan), an instant.
-- Rollback: drops the triggers and the function.

CREATE FUNCTION verification_attempt_insert_guard()
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

REVOKE ALL ON FUNCTION verification_attempt_insert_guard() FROM PUBLIC;

CREATE FUNCTION verification_log_frozen()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION
        'VerificationLog is frozen: INSERT of row % refused; verification results are VerificationAttempt rows',
        NEW."id"
        USING ERRCODE = 'FA001';
END;
$$;

REVOKE ALL ON FUNCTION verification_log_frozen() FROM PUBLIC;

CREATE TRIGGER verificationlog_frozen
BEFORE INSERT ON "VerificationLog"
FOR EACH ROW EXECUTE FUNCTION verification_log_frozen();

ALTER TABLE "VerificationLog"
ENABLE ALWAYS TRIGGER verificationlog_frozen;

CREATE TRIGGER verificationattempt_append_only
BEFORE UPDATE OR DELETE ON "VerificationAttempt"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER verificationattempt_no_truncate
BEFORE TRUNCATE ON "VerificationAttempt"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER verificationattempt_insert_guard
BEFORE INSERT ON "VerificationAttempt"
FOR EACH ROW EXECUTE FUNCTION verification_attempt_insert_guard();

ALTER TABLE "VerificationAttempt"
ENABLE ALWAYS TRIGGER verificationattempt_append_only,
ENABLE ALWAYS TRIGGER verificationattempt_no_truncate,
ENABLE ALWAYS TRIGGER verificationattempt_insert_guard;
