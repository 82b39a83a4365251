-- Rollback of V0021__github_repo_mapping
--
-- Safety: the previous schema has nowhere to keep repository bindings. If the
--   table holds rows the rollback refuses with FM002 (count and the first 20
--   session ids) unless forgea.rollback_preserve = on; then the rows are copied
--   to forgea_archive."GitHubRepoMapping_V0021_<UTC timestamp>" first.
-- Locks: ACCESS EXCLUSIVE on "GitHubRepoMapping" while it is dropped; SHARE ROW
--   EXCLUSIVE on "LabSession" for an instant (FK removal).

DO $$
DECLARE
    n bigint;
    ids text;
BEGIN
    SELECT count(*) INTO n FROM public."GitHubRepoMapping";
    IF n = 0 THEN
        RETURN;
    END IF;
    IF coalesce(current_setting('forgea.rollback_preserve', true), '') <> 'on'
        THEN
        SELECT string_agg(x."sessionId"::text, ', ') INTO ids
        FROM (
            SELECT m."sessionId" FROM public."GitHubRepoMapping" AS m
            ORDER BY m."sessionId" LIMIT 20
        ) AS x;
        RAISE EXCEPTION
            'rollback of V0021__github_repo_mapping refused: GitHubRepoMapping holds % rows',
            n
            USING ERRCODE = 'FM002',
            DETAIL = format('sessionIds (first 20): %s', ids),
            HINT = 'SET forgea.rollback_preserve = on to archive them first.';
    END IF;
    PERFORM forgea_archive_copy('public."GitHubRepoMapping"', 'V0021');
END;
$$;

DROP TABLE "GitHubRepoMapping";
