-- V0017__push_ledger_and_job_queue_tables: "LabAttempt", "GitHubPushDelivery", "VerificationJob"
--
-- What:
--   table "LabAttempt", one row per commit per session:
--     id, sessionId (FK LabSession), commitSha, deliveryId (X-GitHub-Delivery),
--     branch (short name), authorName, authorEmail (nullable), authorLogin
--     (nullable), changedFiles jsonb {"added": [...], "modified": [...],
--     "removed": [...]} (exactly these keys, arrays of <= 3000 non-empty
--     strings), pushedAt, createdAt, and the per-session hash chain chainSeq
--     (1, 2, ...), prevHash, rowHash (computed by the BEFORE INSERT trigger of
--     V0018; layout documented there).
--   UNIQUE (sessionId, commitSha), UNIQUE (deliveryId, commitSha),
--   UNIQUE (sessionId, chainSeq).
--   Table "GitHubPushDelivery": one row per push delivery that record_push
--     recorded (deliveryId UNIQUE, sessionId, branch, headSha, verificationJobId,
--     createdAt). It is how a redelivery is recognised even when every commit of
--     the push was already recorded by an earlier delivery. Append-only too.
--   Commit SHAs: lowercase hex, 40 or 64 characters (CHECK).
--   Every hashed column is held to the values the row-hash layout (V0018)
--   spells in exactly one way: pushedAt and createdAt from 0001-01-01 to
--   9999-12-31 23:59:59.999 (no BC year, no 'infinity' / '-infinity', whose
--   layout spellings collide), changedFiles exactly three arrays of non-empty
--   strings, prevHash/rowHash 32 bytes (CHECKs); uuids, text (valid in the
--   database encoding, never NUL) and NULL need nothing more.
--   After a preserving rollback the archived rows of both tables
--   (forgea_archive."LabAttempt_V0017_<time>", "GitHubPushDelivery_V0017_<time>")
--   come back exactly, hash chain columns included, before V0018's guards and
--   chain trigger exist: the chain is the one that was archived and
--   verify_lab_attempt_chain() / `harness verify` pass on it. A row whose
--   session was deleted meanwhile refuses (FM003, naming it; nothing changed).
--
--   the enum "VerificationJobStatus" (QUEUED, RUNNING, PASSED, FAILED,
--   ERROR) and the table "VerificationJob": one job per commit of a session.
--     * ("labAttemptId", "sessionId", "commitSha") references the LabAttempt
--       with the same three values, so the job's commit and session are the
--       attempt's, enforced by the database (the unique index
--       "LabAttempt_id_sessionId_commitSha_key" of V0017 is its target);
--     * UNIQUE ("labAttemptId") and UNIQUE ("sessionId", "commitSha"): one job
--       per commit SHA within a session. Not a global unique SHA: every fork
--       shares the lab's base commit, and one user's push of it must not block
--       another user's verification (README);
--     * at most one RUNNING job per session (partial unique index);
--     * CHECKs: completedAt is set exactly when the status is terminal; a
--       RUNNING job has a lease (owner and expiry), a QUEUED one has none;
--       1..3 runs once started; SHA lowercase hex 40/64;
--     * "VerificationAttempt"."verificationJobId" is tied to its job by the
--       attempt guard of V0018 (the job must exist and have just completed with
--       the matching result), not by a foreign key: a preserving rollback of this
--       file archives the jobs while the append-only attempts keep their job ids,
--       and a foreign key would make the next apply fail on them. Jobs are never
--       deleted, so in a live database the reference always resolves;
--       `harness verify` reports attempts whose job is only in the archive.
--   Claim order uses "VerificationJob_queued_idx" (createdAt, id) WHERE QUEUED
--   and "VerificationJob_sessionId_queued_idx" for "no older job of the session";
--   lease expiry uses "VerificationJob_leaseExpiresAt_idx" WHERE RUNNING.
--   Only the owner may write the table; forgea_app and forgea_worker go through
--   the functions of V0019, which are the only road to PASSED.
--   After a preserving rollback the archived jobs
--   (forgea_archive."VerificationJob_V0017_<time>") come back exactly, before
--   V0018's guards exist (a restored job is not a fresh QUEUED one); a job whose
--   ledger row or session is gone refuses (FM003, naming it; nothing changed).
--   "VerificationJob"."leaseTokenHash" bytea: SHA-256 of the lease token of the
--   job's latest run (claim_verification_job hands the token to the worker and
--   keeps only its hash; complete_verification_job must be shown the token).
--   "VerificationJob"."attestationSignature" bytea (64 bytes) and
--   "attestationKeyId" text: the completing worker's Ed25519 signature over the
--   statement forgea.attestation.v1 (docs/security.md "Worker attestations")
--   and the id of its key, both or neither, only on a terminal job (CHECK
--   "VerificationJob_attestation_check"); frozen with the terminal row by
--   V0018's guard. The database never verifies them and holds no key:
--   `harness verify --worker-keys FILE` does, with public keys kept outside.
-- Why: CONTRACT section 4 (LabAttempt, VerificationJob). The tables are new
--   and unused until V0019's API exists, so their indexes, CHECKs and foreign
--   keys are created valid, in this transaction, without CONCURRENTLY.
-- Transaction: yes.
-- Locks: new tables only, plus SHARE ROW EXCLUSIVE for an instant on
--   "LabSession" and "LabVersion" for the foreign keys. At 1M: under 0.1 s.
-- Pre-conditions: none.
-- Rollback: refuses (FM002) when any of the three tables holds rows (pushes,
--   deliveries and jobs exist nowhere else) unless forgea.rollback_preserve is
--   on, which archives every row first; drops the tables, the enum and the
--   function.

CREATE FUNCTION lab_attempt_changed_files_valid(p_files jsonb)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        jsonb_typeof(p_files) = 'object'
        AND p_files ?& ARRAY['added', 'modified', 'removed']
        AND p_files - ARRAY['added', 'modified', 'removed'] = '{}'::jsonb
        AND jsonb_typeof(p_files -> 'added') = 'array'
        AND jsonb_typeof(p_files -> 'modified') = 'array'
        AND jsonb_typeof(p_files -> 'removed') = 'array'
        AND jsonb_array_length(p_files -> 'added') <= 3000
        AND jsonb_array_length(p_files -> 'modified') <= 3000
        AND jsonb_array_length(p_files -> 'removed') <= 3000
        -- strict: in lax mode the filter unwraps a nested array, so [["a"]]
        -- passed (and the hash layout spells it like the path '["a"]'); silent:
        -- a non-array value yields NULL (refused) instead of an error
        AND NOT jsonb_path_exists(
            p_files, 'strict $.*[*] ? (@.type() != "string" || @ == "")', '{}', true
        ),
        false
    )
$$;

REVOKE ALL ON FUNCTION lab_attempt_changed_files_valid(jsonb) FROM PUBLIC;

CREATE TABLE "LabAttempt" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "deliveryId" TEXT NOT NULL,
    "branch" TEXT NOT NULL,
    "authorName" TEXT NOT NULL,
    "authorEmail" TEXT,
    "authorLogin" TEXT,
    "changedFiles" JSONB NOT NULL,
    "pushedAt" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    "chainSeq" BIGINT NOT NULL,
    "prevHash" BYTEA NOT NULL,
    "rowHash" BYTEA NOT NULL,
    CONSTRAINT "LabAttempt_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "LabAttempt_commitSha_check"
    CHECK ("commitSha" ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    CONSTRAINT "LabAttempt_deliveryId_check"
    CHECK (length("deliveryId") BETWEEN 1 AND 100),
    CONSTRAINT "LabAttempt_branch_check"
    CHECK (octet_length("branch") BETWEEN 1 AND 255),
    CONSTRAINT "LabAttempt_authorName_check"
    CHECK (length("authorName") BETWEEN 1 AND 1000),
    CONSTRAINT "LabAttempt_authorEmail_check"
    CHECK (length("authorEmail") <= 1000),
    CONSTRAINT "LabAttempt_authorLogin_check"
    CHECK (length("authorLogin") <= 1000),
    CONSTRAINT "LabAttempt_changedFiles_check"
    CHECK (lab_attempt_changed_files_valid("changedFiles")),
    -- the hash layout writes timestamps as YYYY-MM-DDTHH:MM:SS.mmmZ: no era,
    -- no infinity; only years 1..9999 (AD) have one spelling each there
    CONSTRAINT "LabAttempt_pushedAt_check"
    CHECK ("pushedAt" BETWEEN '0001-01-01 00:00:00' AND '9999-12-31 23:59:59.999'),
    CONSTRAINT "LabAttempt_createdAt_check"
    CHECK ("createdAt" BETWEEN '0001-01-01 00:00:00' AND '9999-12-31 23:59:59.999'),
    CONSTRAINT "LabAttempt_chainSeq_check" CHECK ("chainSeq" >= 1),
    CONSTRAINT "LabAttempt_prevHash_check" CHECK (octet_length("prevHash") = 32),
    CONSTRAINT "LabAttempt_rowHash_check" CHECK (octet_length("rowHash") = 32)
);

CREATE UNIQUE INDEX "LabAttempt_sessionId_commitSha_key"
ON "LabAttempt" ("sessionId", "commitSha");

CREATE UNIQUE INDEX "LabAttempt_deliveryId_commitSha_key"
ON "LabAttempt" ("deliveryId", "commitSha");

CREATE UNIQUE INDEX "LabAttempt_sessionId_chainSeq_key"
ON "LabAttempt" ("sessionId", "chainSeq");

CREATE UNIQUE INDEX
"LabAttempt_id_sessionId_commitSha_key"
ON "LabAttempt" ("id", "sessionId", "commitSha");

ALTER TABLE "LabAttempt" ADD CONSTRAINT "LabAttempt_sessionId_fkey"
FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id")
ON DELETE RESTRICT ON UPDATE RESTRICT;

CREATE TABLE "GitHubPushDelivery" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "deliveryId" TEXT NOT NULL,
    "sessionId" UUID NOT NULL,
    "branch" TEXT NOT NULL,
    "headSha" TEXT NOT NULL,
    "verificationJobId" UUID,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    CONSTRAINT "GitHubPushDelivery_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "GitHubPushDelivery_headSha_check"
    CHECK ("headSha" ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    CONSTRAINT "GitHubPushDelivery_deliveryId_check"
    CHECK (length("deliveryId") BETWEEN 1 AND 100)
);

CREATE UNIQUE INDEX "GitHubPushDelivery_deliveryId_key"
ON "GitHubPushDelivery" ("deliveryId");

CREATE INDEX "GitHubPushDelivery_sessionId_idx"
ON "GitHubPushDelivery" ("sessionId");

ALTER TABLE "GitHubPushDelivery" ADD CONSTRAINT "GitHubPushDelivery_sessionId_fkey"
FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id")
ON DELETE RESTRICT ON UPDATE RESTRICT;

COMMENT ON TABLE "LabAttempt" IS
'Append-only push ledger, one row per commit per session, hash-chained per session (V0017, V0018). Written only by record_push.';

COMMENT ON TABLE "GitHubPushDelivery" IS
'Append-only register of the push deliveries record_push recorded (V0017).';

SELECT forgea_archive_restore('"LabAttempt"', 'V0017');

SELECT forgea_archive_restore('"GitHubPushDelivery"', 'V0017');

REVOKE ALL ON "LabAttempt", "GitHubPushDelivery" FROM PUBLIC;

GRANT SELECT ON "LabAttempt", "GitHubPushDelivery"
TO forgea_app, forgea_worker, forgea_readonly;

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
    "leaseTokenHash" BYTEA,
    "attestationSignature" BYTEA,
    "attestationKeyId" TEXT,
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
    CONSTRAINT "VerificationJob_attestation_check" CHECK (
        ("attestationSignature" IS NULL) = ("attestationKeyId" IS NULL)
        AND (
            "attestationSignature" IS NULL
            OR octet_length("attestationSignature") = 64
            AND "attestationKeyId" ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'
            AND "status" IN ('PASSED', 'FAILED', 'ERROR')
        )
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

SELECT forgea_archive_restore('"VerificationJob"', 'V0017');

REVOKE ALL ON "VerificationJob" FROM PUBLIC;

GRANT SELECT ON "VerificationJob"
TO forgea_app, forgea_worker, forgea_readonly;

COMMENT ON COLUMN "VerificationJob"."leaseTokenHash" IS
'SHA-256 of the lease token claim_verification_job handed to the latest run (V0017).';

COMMENT ON COLUMN "VerificationJob"."attestationSignature" IS
'Ed25519 signature of the completing worker over forgea.attestation.v1 (docs/security.md); never verified in the database (V0017).';

COMMENT ON COLUMN "VerificationJob"."attestationKeyId" IS
'Id of the worker key that made attestationSignature; public keys live outside the database (V0017).';
