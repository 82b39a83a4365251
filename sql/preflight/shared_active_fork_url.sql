-- shared_active_fork_url: no two active sessions share one canonical fork URL
--
-- Guards: the partial unique index "GitHubRepoMapping_repoUrl_active_key"
--   (one active session per repository URL): the file that creates
--   GitHubRepoMapping refuses first (FM001) when two active sessions' fork URLs
--   canonicalise to the same repository.
-- Needed by: the file that creates "GitHubRepoMapping" (github_repo_mapping
--   today).
-- When: always: it computes the canonical form itself (canonical_repo_url()
--   does not exist before the chain), so it runs on production before
--   anything commits.
-- Lists: every active session whose canonical fork URL another active session
--   also has, by URL.
-- Remedy: keep one active session per repository. With today's Prisma client:
--   DEFERRED is active too, so it does not clear this; a session that really
--   passed is closed by verification (VERIFIED_PASS); otherwise ask the users
--   concerned (one of them forked into the wrong repository). Once the client
--   regenerated from prisma/schema.prisma runs: FAILED (see
--   one_active_session for the one-way door it closes).
WITH folded AS MATERIALIZED (
    -- The canonical fork URL, computed as canonical_repo_url() (V0014) computes it,
    -- so that this runs on production before the chain exists: printable ASCII
    -- only (a code-point range under COLLATE "C"), at most 500 characters, ASCII
    -- letters folded by lower() under COLLATE "C" (A-Z only), one of the
    -- six GitHub prefixes, owner/name with an optional ".git" and trailing slashes,
    -- GitHub's owner and name rules. tests/test_preflight.py compares it with
    -- canonical_repo_url() over a corpus of hostile URLs. MATERIALIZED: inlined,
    -- each later step would repeat the earlier ones' expressions (measured at 100k
    -- sessions: 48 s inlined, 3.8 s materialized).
    SELECT
        s."id",
        s."userId",
        s."labId",
        s."status"::text AS "status",
        s."userForkUrl",
        CASE
            WHEN
                length(s."userForkUrl") <= 500
                AND s."userForkUrl" COLLATE "C" ~ '^[!-~]*$'  -- noqa: RF03
                THEN lower(s."userForkUrl" COLLATE "C")  -- noqa: RF03
        END AS "folded"
    FROM public."LabSession" AS s
),

stripped AS MATERIALIZED (
    SELECT
        f.*,
        rtrim(CASE
            WHEN starts_with(f."folded", 'https://github.com/')
                THEN substr(f."folded", 20)
            WHEN starts_with(f."folded", 'http://github.com/')
                THEN substr(f."folded", 19)
            WHEN starts_with(f."folded", 'https://www.github.com/')
                THEN substr(f."folded", 24)
            WHEN starts_with(f."folded", 'http://www.github.com/')
                THEN substr(f."folded", 23)
            WHEN starts_with(f."folded", 'ssh://git@github.com/')
                THEN substr(f."folded", 22)
            WHEN starts_with(f."folded", 'git@github.com:')
                THEN substr(f."folded", 16)
        END, '/') AS "rest"
    FROM folded AS f
),

parts AS MATERIALIZED (
    SELECT
        r.*,
        CASE
            WHEN r."rest" ~ '^[^/]+/[^/]+$' THEN split_part(r."rest", '/', 1)
        END AS "owner",
        CASE
            WHEN r."rest" !~ '^[^/]+/[^/]+$' THEN NULL
            WHEN
                length(split_part(r."rest", '/', 2)) > 4
                AND right(split_part(r."rest", '/', 2), 4) = '.git'
                THEN left(split_part(r."rest", '/', 2), -4)
            ELSE split_part(r."rest", '/', 2)
        END AS "name"
    FROM stripped AS r
),

canonical AS (
    SELECT
        p."id",
        p."userId",
        p."labId",
        p."status",
        p."userForkUrl",
        CASE
            WHEN
                p."owner" ~ '^[a-z0-9]([a-z0-9-]{0,37}[a-z0-9])?$'
                AND p."name" ~ '^[a-z0-9._-]{1,100}$'
                AND p."name" NOT IN ('.', '..')
                THEN 'https://github.com/' || p."owner" || '/' || p."name"
        END AS "url"
    FROM parts AS p
)

SELECT
    a."url" AS "canonicalUrl",
    a."id" AS "sessionId",
    a."userId",
    a."labId",
    a."status",
    a."userForkUrl"
FROM (
    SELECT
        c.*,
        count(*) OVER (PARTITION BY c."url") AS n
    FROM canonical AS c
    WHERE c."status" IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
) AS a
WHERE a."url" IS NOT NULL AND a.n > 1
ORDER BY a."url", a."id";
