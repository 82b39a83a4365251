-- V0021__github_repo_mapping: the explicit repository -> LabSession binding (F6)
-- harness: precondition shared_active_fork_url
-- harness: precondition unparseable_fork_url
--
-- What: table "GitHubRepoMapping", one row per LabSession (UNIQUE sessionId):
--     id uuid, sessionId (FK LabSession), provider ('github'), providerRepoId
--     bigint (GitHub's immutable repository id; NULL for rows backfilled from
--     URLs until the first push carrying it fills it in, once), repoFullName
--     ('owner/name', lowercase), repoUrl (canonical_repo_url() output),
--     defaultBranch (nullable), sessionActive (denormalised: true while the
--     session's status is IN_PROGRESS, STUCK or DEFERRED; maintained by the
--     triggers of V0022, never by callers), idempotencyKey / requestDigest
--     (create_lab_session's idempotency record; NULL for backfilled rows),
--     createdAt.
--   Partial unique indexes give "at most one active session per providerRepoId
--   and per repoUrl" under any concurrency:
--     "GitHubRepoMapping_providerRepoId_active_key" (providerRepoId) WHERE sessionActive
--     "GitHubRepoMapping_repoUrl_active_key"        (repoUrl)        WHERE sessionActive
--   Pre-flight (FM001, nothing changed): refuses when two ACTIVE sessions already
--   share one canonical fork URL; DETAIL lists the URLs and session ids (first
--   20). Resolve those sessions (move one to a terminal state) and re-run.
--   After a preserving rollback, the archived bindings
--   (forgea_archive."GitHubRepoMapping_V0021_<time>") come back first, exactly
--   (ids, providerRepoId, idempotency keys, createdAt); V0024 then backfills
--   only sessions without one. A binding whose session was deleted, or whose
--   archived sessionActive no longer matches its session's status (the session
--   moved while rolled back), refuses (FM003, naming the sessions; nothing
--   changed).
-- Why: CONTRACT section 4 (GitHubRepoMapping).
-- Locks: the pre-flight is a plain SELECT over "LabSession" (ACCESS SHARE, one
--   sequential scan: about a second per million rows; never blocks writes).
--   The new table is empty; the FK takes SHARE ROW EXCLUSIVE on "LabSession" for
--   an instant (no validation scan: the table is empty). A restore reads its
--   archive table and takes KEY SHARE row locks on the referenced sessions.
-- Rollback: refuses (FM002, count and ids) when the table holds rows, unless
--   forgea.rollback_preserve = on, which archives them to forgea_archive first.

DO $$
DECLARE
    v_dups text;
BEGIN
    SELECT string_agg(format('%s: %s', d.url, d.ids), '; ')
    INTO v_dups
    FROM (
        SELECT
            a.url,
            string_agg(a."id"::text, ', ' ORDER BY a."id") AS ids
        FROM (
            SELECT s."id", canonical_repo_url(s."userForkUrl") AS url
            FROM public."LabSession" AS s
            WHERE s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
        ) AS a
        WHERE a.url IS NOT NULL
        GROUP BY a.url
        HAVING count(*) > 1
        ORDER BY a.url
        LIMIT 20
    ) AS d;
    IF v_dups IS NOT NULL THEN
        RAISE EXCEPTION
            'V0021__github_repo_mapping pre-flight failed: active LabSessions share a canonical fork URL'
            USING ERRCODE = 'FM001',
            DETAIL = 'canonical URL: session ids (first 20 URLs): ' || v_dups,
            HINT = 'Move all but one of each group to a terminal state, then re-run.';
    END IF;
END;
$$;

CREATE TABLE "GitHubRepoMapping" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL,
    "provider" TEXT NOT NULL DEFAULT 'github',
    "providerRepoId" BIGINT,
    "repoFullName" TEXT NOT NULL,
    "repoUrl" TEXT NOT NULL,
    "defaultBranch" TEXT,
    "sessionActive" BOOLEAN NOT NULL DEFAULT TRUE,
    "idempotencyKey" TEXT,
    "requestDigest" BYTEA,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    CONSTRAINT "GitHubRepoMapping_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "GitHubRepoMapping_provider_check"
    CHECK ("provider" = 'github'),
    CONSTRAINT "GitHubRepoMapping_providerRepoId_check"
    CHECK ("providerRepoId" > 0),
    CONSTRAINT "GitHubRepoMapping_repoUrl_check"
    CHECK ("repoUrl" = canonical_repo_url("repoUrl")),
    CONSTRAINT "GitHubRepoMapping_repoFullName_check"
    CHECK ('https://github.com/' || "repoFullName" = "repoUrl"),
    CONSTRAINT "GitHubRepoMapping_defaultBranch_check"
    CHECK (octet_length("defaultBranch") BETWEEN 1 AND 255),
    CONSTRAINT "GitHubRepoMapping_idempotencyKey_check"
    CHECK (
        ("idempotencyKey" IS NULL) = ("requestDigest" IS NULL)
        AND length("idempotencyKey") BETWEEN 1 AND 200
    )
);

CREATE UNIQUE INDEX "GitHubRepoMapping_sessionId_key"
ON "GitHubRepoMapping" ("sessionId");

CREATE UNIQUE INDEX "GitHubRepoMapping_idempotencyKey_key"
ON "GitHubRepoMapping" ("idempotencyKey");

CREATE UNIQUE INDEX "GitHubRepoMapping_providerRepoId_active_key"
ON "GitHubRepoMapping" ("providerRepoId")
WHERE "sessionActive";

CREATE UNIQUE INDEX "GitHubRepoMapping_repoUrl_active_key"
ON "GitHubRepoMapping" ("repoUrl")
WHERE "sessionActive";

CREATE INDEX "GitHubRepoMapping_providerRepoId_idx"
ON "GitHubRepoMapping" ("providerRepoId");

CREATE INDEX "GitHubRepoMapping_repoUrl_idx"
ON "GitHubRepoMapping" ("repoUrl");

ALTER TABLE "GitHubRepoMapping" ADD CONSTRAINT "GitHubRepoMapping_sessionId_fkey"
FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id")
ON DELETE RESTRICT ON UPDATE RESTRICT;

SELECT forgea_archive_restore('"GitHubRepoMapping"', 'V0021');

DO $$
DECLARE
    v_ids text;
BEGIN
    SELECT string_agg(x."sessionId"::text, ', ') INTO v_ids
    FROM (
        SELECT m."sessionId"
        FROM public."GitHubRepoMapping" AS m
        INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
        WHERE m."sessionActive"
        <> (s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED'))
        ORDER BY m."sessionId"
        LIMIT 20
    ) AS x;
    IF v_ids IS NOT NULL THEN
        RAISE EXCEPTION
            'apply of V0021 refused: archived GitHubRepoMapping rows contradict their sessions'' status'
            USING ERRCODE = 'FM003',
            DETAIL = 'sessionActive differs from the session''s status; sessionIds (first 20): '
            || v_ids,
            HINT = 'The sessions changed status while rolled back. Nothing of this '
            || 'file was applied and the archive is unchanged.';
    END IF;
END;
$$;

COMMENT ON TABLE "GitHubRepoMapping" IS
'Repository -> LabSession binding (V0021). Written only by create_lab_session, record_push and the LabSession triggers of V0022.';

REVOKE ALL ON "GitHubRepoMapping" FROM PUBLIC;
GRANT SELECT ON "GitHubRepoMapping"
TO forgea_app, forgea_worker, forgea_readonly;
