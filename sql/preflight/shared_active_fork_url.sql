-- shared_active_fork_url: no two active sessions share one canonical fork URL
--
-- Guards: the partial unique index "GitHubRepoMapping_repoUrl_active_key"
--   (one active session per repository URL): the file that creates
--   GitHubRepoMapping refuses first (FM001) when two active sessions' fork URLs
--   canonicalise to the same repository.
-- Needed by: the file that creates "GitHubRepoMapping" (github_repo_mapping
--   today).
-- When: it needs canonical_repo_url(), which an earlier file of the chain
--   creates: on production before the chain it is deferred, and `harness
--   apply` evaluates it right before its file.
-- Lists: every active session whose canonical fork URL another active session
--   also has, by URL.
-- Remedy: keep one active session per repository. With today's Prisma client:
--   DEFERRED is active too, so it does not clear this; a session that really
--   passed is closed by verification (VERIFIED_PASS); otherwise ask the users
--   concerned (one of them forked into the wrong repository). Once the client
--   regenerated from prisma/schema.prisma runs: FAILED (see
--   one_active_session for the one-way door it closes).
SELECT
    a."url" AS "canonicalUrl",
    a."id" AS "sessionId",
    a."userId",
    a."labId",
    a."status",
    a."userForkUrl"
FROM (
    SELECT
        s."id",
        s."userId",
        s."labId",
        s."status"::text AS "status",
        s."userForkUrl",
        canonical_repo_url(s."userForkUrl") AS "url",
        count(*) OVER (PARTITION BY canonical_repo_url(s."userForkUrl")) AS n
    FROM public."LabSession" AS s
    WHERE s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
) AS a
WHERE a."url" IS NOT NULL AND a.n > 1
ORDER BY a."url", a."id";
