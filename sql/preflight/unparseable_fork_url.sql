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
-- When: it needs canonical_repo_url(), which an earlier file creates: deferred
--   on production before the chain.
-- Lists: the sessions (any status) whose fork URL does not parse, by id.
-- Remedy: none needed to migrate. To have pushes matched, the user gives the
--   session a real GitHub fork URL (a new session: a session's fork URL never
--   changes once the chain is applied).
SELECT
    s."id" AS "sessionId",
    s."userId",
    s."status"::text AS "status",
    s."userForkUrl"
FROM public."LabSession" AS s
WHERE canonical_repo_url(s."userForkUrl") IS NULL
ORDER BY s."id";
