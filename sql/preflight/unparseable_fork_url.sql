-- unparseable_fork_url: fork URLs that canonical_repo_url() cannot parse
-- preflight: warning
--
-- Guards: nothing is refused. The mapping backfill binds every session whose
--   fork URL parses and REPORTS the others (NOTICE lines, and
--   list_unmapped_lab_sessions() at any time): such a session stays usable by
--   the application but no push can be matched to it. A warning, not a
--   pre-condition: the chain applies either way (docs/decisions.md).
-- Needed by: the file that creates "GitHubRepoMapping" (github_repo_mapping
--   today), whose backfill (a later file) leaves these sessions unbound.
-- When: always: it computes the canonical form itself, so it runs on
--   production before the chain.
-- Lists: the sessions (any status) whose fork URL does not parse, by id.
-- Remedy: none needed to migrate. To have pushes matched, the user gives the
--   session a real GitHub fork URL (a new session: a session's fork URL never
--   changes once the chain is applied).
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
    c."id" AS "sessionId",
    c."userId",
    c."status",
    c."userForkUrl"
FROM canonical AS c
WHERE c."url" IS NULL
ORDER BY c."id";
