-- Rollback of V0014__github_repo_mapping
--
-- What: drops the backfill procedure, list_unmapped_lab_sessions(),
--   "GitHubRepoMapping" and canonical_repo_url().
-- Safety: rows that re-applying V0014-V0016 rebuilds from
--   LabSession.userForkUrl (no providerRepoId, no idempotency key, no default
--   branch, repoUrl = canonical_repo_url of the session's fork URL) may be
--   dropped. Any other row (a binding made by create_lab_session or completed
--   by a push) makes the rollback refuse with FM002 (the first 20 session ids)
--   unless forgea.rollback_preserve = on. With preservation on, the whole
--   table is copied to forgea_archive."GitHubRepoMapping_V0014_<UTC time>"
--   first and V0014 restores it on the next apply (before V0016 backfills).
-- Transaction: yes.
-- Locks: ACCESS EXCLUSIVE on "GitHubRepoMapping" while it is dropped; SHARE
--   ROW EXCLUSIVE on "LabSession" for an instant (foreign key removal).

DROP PROCEDURE backfill_github_repo_mapping(integer, integer);

DROP FUNCTION list_unmapped_lab_sessions();

DO $$
DECLARE
    ids text;
BEGIN
    SELECT string_agg(x."sessionId"::text, ', ')
    INTO ids
    FROM (
        SELECT m."sessionId"
        FROM public."GitHubRepoMapping" AS m
        INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
        WHERE
            m."providerRepoId" IS NOT NULL
            OR m."idempotencyKey" IS NOT NULL
            OR m."defaultBranch" IS NOT NULL
            OR m."repoUrl"
            IS DISTINCT FROM public.canonical_repo_url(s."userForkUrl")
        ORDER BY m."sessionId"
        LIMIT 20
    ) AS x;
    IF ids IS NOT NULL THEN
        PERFORM forgea_rollback_preserving(
            'V0014__github_repo_mapping',
            'GitHubRepoMapping holds bindings that LabSession.userForkUrl cannot rebuild',
            'sessionIds (first 20): ' || ids
        );
    END IF;
    PERFORM forgea_archive_if_preserving('public."GitHubRepoMapping"', 'V0014');
END;
$$;

DROP TABLE "GitHubRepoMapping";

DROP FUNCTION canonical_repo_url(text);

DROP FUNCTION lab_status_is_active(text);
