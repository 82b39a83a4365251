-- V0009__verification_attempt: "VerificationAttempt", many attempts per session
--
-- What: creates the enum "VerificationResult" (PASS, FAIL) and the append-only
--   table "VerificationAttempt" (B6 tasks 48-53): one row per verification run
--   of a session, with the commit, the result, the logs as a JSON object and the
--   verification job that produced it (NULL only for rows copied from the
--   legacy "VerificationLog" by V0013; UNIQUE otherwise). Commit SHAs are
--   lowercase hex of 40 (SHA-1) or 64 (SHA-256) characters; copied legacy rows
--   keep whatever the legacy table held (never rewritten) and `harness verify`
--   reports those that do not match.
--   "VerificationLog" is frozen by V0010's trigger, not here: forgea_app keeps
--   its INSERT privilege so that the app's current client, should it still
--   write a legacy row, is told why (FA001, "VerificationLog is frozen ...")
--   instead of a bare "permission denied".
-- Why: CONTRACT section 4; the legacy table allows one record per session.
--   After a preserving rollback, the archived attempts
--   (forgea_archive."VerificationAttempt_V0009_<time>") come back first with
--   their ids, results, logs and times; V0013 then copies only VerificationLog
--   rows that have no attempt with their id, so a legacy copy keeps the result
--   it was given (a FAIL is never re-derived into a PASS).
-- Locks: new objects only (the restore reads its archive table).
-- Rollback: refuses (FM002) when the table holds rows that are not copies of
--   "VerificationLog" rows (attempts made after the migration), unless
--   forgea.rollback_preserve = on, which archives the table first; then drops
--   it.

CREATE TYPE "VerificationResult" AS ENUM ('PASS', 'FAIL');

CREATE TABLE "VerificationAttempt" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "result" "VerificationResult" NOT NULL,
    "logs" JSONB NOT NULL,
    "verificationJobId" UUID,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    CONSTRAINT "VerificationAttempt_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "VerificationAttempt_logs_check" CHECK (
        jsonb_typeof("logs") = 'object'
    ),
    -- The NULL test first: OR stops there for the legacy copies of V0013,
    -- which then skip a regex they never needed (at 100k rows the saving is
    -- inside the run-to-run noise of V0013, about 1 s in 36).
    CONSTRAINT "VerificationAttempt_commitSha_check" CHECK (
        "verificationJobId" IS NULL
        OR "commitSha" ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'
    ),
    CONSTRAINT "VerificationAttempt_sessionId_fkey" FOREIGN KEY ("sessionId")
    REFERENCES "LabSession" ("id") ON DELETE RESTRICT ON UPDATE RESTRICT
);

CREATE UNIQUE INDEX "VerificationAttempt_verificationJobId_key"
ON "VerificationAttempt" ("verificationJobId");

CREATE INDEX "VerificationAttempt_sessionId_createdAt_idx"
ON "VerificationAttempt" ("sessionId", "createdAt");

SELECT forgea_archive_restore('"VerificationAttempt"', 'V0009');

GRANT SELECT ON "VerificationAttempt"
TO forgea_app, forgea_worker, forgea_readonly;
