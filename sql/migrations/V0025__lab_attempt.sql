-- V0025__lab_attempt: the append-only push ledger (G5) and its delivery register
--
-- What: table "LabAttempt", one row per commit per session:
--     id, sessionId (FK LabSession), commitSha, deliveryId (X-GitHub-Delivery),
--     branch (short name), authorName, authorEmail (nullable), authorLogin
--     (nullable), changedFiles jsonb {"added": [...], "modified": [...],
--     "removed": [...]} (exactly these keys, arrays of <= 3000 non-empty
--     strings), pushedAt, createdAt, and the per-session hash chain chainSeq
--     (1, 2, ...), prevHash, rowHash (computed by the BEFORE INSERT trigger of
--     V0026; layout documented there).
--   UNIQUE (sessionId, commitSha), UNIQUE (deliveryId, commitSha),
--   UNIQUE (sessionId, chainSeq).
--   Table "GitHubPushDelivery": one row per push delivery that record_push
--     recorded (deliveryId UNIQUE, sessionId, branch, headSha, verificationJobId,
--     createdAt). It is how a redelivery is recognised even when every commit of
--     the push was already recorded by an earlier delivery. Append-only too.
--   Commit SHAs: lowercase hex, 40 or 64 characters (CHECK).
--   After a preserving rollback the archived rows of both tables
--   (forgea_archive."LabAttempt_V0025_<time>", "GitHubPushDelivery_V0025_<time>")
--   come back exactly, hash chain columns included, before V0026's guards and
--   chain trigger exist: the chain is the one that was archived and
--   verify_lab_attempt_chain() / `harness verify` pass on it. A row whose
--   session was deleted meanwhile refuses (FM003, naming it; nothing changed).
-- Why: CONTRACT section 4 (LabAttempt, commit SHAs).
-- Locks: new tables; the FKs take SHARE ROW EXCLUSIVE on "LabSession" for
--   an instant (no validation scan). A restore reads its archive tables and
--   takes KEY SHARE row locks on the referenced sessions.
-- Rollback: the previous schema cannot hold ledger rows: refuses (FM002, count
--   and ids) unless forgea.rollback_preserve = on, which archives both tables to
--   forgea_archive first.

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
        AND NOT jsonb_path_exists(
            p_files, 'lax $.*[*] ? (@.type() != "string" || @ == "")'
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
'Append-only push ledger, one row per commit per session, hash-chained per session (V0025, V0026). Written only by record_push.';
COMMENT ON TABLE "GitHubPushDelivery" IS
'Append-only register of the push deliveries record_push recorded (V0025).';

SELECT forgea_archive_restore('"LabAttempt"', 'V0025');

SELECT forgea_archive_restore('"GitHubPushDelivery"', 'V0025');

REVOKE ALL ON "LabAttempt", "GitHubPushDelivery" FROM PUBLIC;
GRANT SELECT ON "LabAttempt", "GitHubPushDelivery"
TO forgea_app, forgea_worker, forgea_readonly;
