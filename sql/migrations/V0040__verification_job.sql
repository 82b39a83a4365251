-- V0040__verification_job: "VerificationJob", the verification queue (H1)
--
-- What: the enum "VerificationJobStatus" (QUEUED, RUNNING, PASSED, FAILED,
--   ERROR) and the table "VerificationJob": one job per commit of a session.
--     * ("labAttemptId", "sessionId", "commitSha") references the LabAttempt
--       with the same three values, so the job's commit and session are the
--       attempt's, enforced by the database (the unique index
--       "LabAttempt_id_sessionId_commitSha_key" of V0039 is its target);
--     * UNIQUE ("labAttemptId") and UNIQUE ("sessionId", "commitSha"): one job
--       per commit SHA within a session. Not a global unique SHA: every fork
--       shares the lab's base commit, and one user's push of it must not block
--       another user's verification (README);
--     * at most one RUNNING job per session (partial unique index);
--     * CHECKs: completedAt is set exactly when the status is terminal; a
--       RUNNING job has a lease (owner and expiry), a QUEUED one has none;
--       1..3 runs once started; SHA lowercase hex 40/64;
--     * "VerificationAttempt"."verificationJobId" is tied to its job by the
--       attempt guard of V0041 (the job must exist and have just completed with
--       the matching result), not by a foreign key: a preserving rollback of this
--       file archives the jobs while the append-only attempts keep their job ids,
--       and a foreign key would make the next apply fail on them. Jobs are never
--       deleted, so in a live database the reference always resolves;
--       `harness verify` reports attempts whose job is only in the archive.
--   Claim order uses "VerificationJob_queued_idx" (createdAt, id) WHERE QUEUED
--   and "VerificationJob_sessionId_queued_idx" for "no older job of the session";
--   lease expiry uses "VerificationJob_leaseExpiresAt_idx" WHERE RUNNING.
--   Only the owner may write the table; forgea_app and forgea_worker go through
--   the functions of V0042, which are the only road to PASSED.
--   After a preserving rollback the archived jobs
--   (forgea_archive."VerificationJob_V0040_<time>") come back exactly, before
--   V0041's guards exist (a restored job is not a fresh QUEUED one); a job whose
--   ledger row or session is gone refuses (FM003, naming it; nothing changed).
-- Why: CONTRACT sections 4-5; founding document 002 (H1).
-- Locks: new table; the FKs take SHARE ROW EXCLUSIVE on "LabAttempt",
--   "LabSession" and "LabVersion" for an instant (no scan: the table is new). A
--   restore reads its archive table and takes KEY SHARE row locks on the
--   referenced ledger rows, sessions and versions.
-- Rollback: refuses (FM002, naming jobs) while any job exists, unless
--   forgea.rollback_preserve = on, which archives the table first.

CREATE TYPE "VerificationJobStatus" AS ENUM (
    'QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'ERROR'
);

CREATE TABLE "VerificationJob" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "labAttemptId" UUID NOT NULL,
    "sessionId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "labVersionId" UUID NOT NULL,
    "status" "VerificationJobStatus" NOT NULL DEFAULT 'QUEUED',
    "runCount" INTEGER NOT NULL DEFAULT 0,
    "leaseOwner" TEXT,
    "leaseExpiresAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    "startedAt" TIMESTAMP(3),
    "completedAt" TIMESTAMP(3),
    "exitCode" INTEGER,
    "errorMessage" TEXT,
    CONSTRAINT "VerificationJob_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "VerificationJob_commitSha_check" CHECK (
        "commitSha" ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'
    ),
    CONSTRAINT "VerificationJob_runCount_check" CHECK (
        "runCount" BETWEEN 0 AND 3
        AND ("runCount" = 0) = ("startedAt" IS NULL)
    ),
    CONSTRAINT "VerificationJob_completedAt_check" CHECK (
        ("status" IN ('PASSED', 'FAILED', 'ERROR')) = ("completedAt" IS NOT NULL)
    ),
    CONSTRAINT "VerificationJob_lease_check" CHECK (
        "status" <> 'RUNNING'
        OR "leaseOwner" IS NOT NULL AND "leaseExpiresAt" IS NOT NULL
    ),
    CONSTRAINT "VerificationJob_queued_check" CHECK (
        "status" <> 'QUEUED'
        OR "leaseOwner" IS NULL AND "leaseExpiresAt" IS NULL
    ),
    CONSTRAINT "VerificationJob_labAttemptId_fkey"
    FOREIGN KEY ("labAttemptId", "sessionId", "commitSha")
    REFERENCES "LabAttempt" ("id", "sessionId", "commitSha")
    ON DELETE RESTRICT ON UPDATE RESTRICT,
    CONSTRAINT "VerificationJob_sessionId_fkey" FOREIGN KEY ("sessionId")
    REFERENCES "LabSession" ("id") ON DELETE RESTRICT ON UPDATE RESTRICT,
    CONSTRAINT "VerificationJob_labVersionId_fkey" FOREIGN KEY ("labVersionId")
    REFERENCES "LabVersion" ("id") ON DELETE RESTRICT ON UPDATE RESTRICT
);

CREATE UNIQUE INDEX "VerificationJob_labAttemptId_key"
ON "VerificationJob" ("labAttemptId");

CREATE UNIQUE INDEX "VerificationJob_sessionId_commitSha_key"
ON "VerificationJob" ("sessionId", "commitSha");

CREATE UNIQUE INDEX "VerificationJob_sessionId_running_key"
ON "VerificationJob" ("sessionId")
WHERE "status" = 'RUNNING';

CREATE INDEX "VerificationJob_queued_idx"
ON "VerificationJob" ("createdAt", "id")
WHERE "status" = 'QUEUED';

CREATE INDEX "VerificationJob_sessionId_queued_idx"
ON "VerificationJob" ("sessionId", "createdAt", "id")
WHERE "status" = 'QUEUED';

CREATE INDEX "VerificationJob_leaseExpiresAt_idx"
ON "VerificationJob" ("leaseExpiresAt")
WHERE "status" = 'RUNNING';

SELECT forgea_archive_restore('"VerificationJob"', 'V0040');

REVOKE ALL ON "VerificationJob" FROM PUBLIC;
GRANT SELECT ON "VerificationJob"
TO forgea_app, forgea_worker, forgea_readonly;
