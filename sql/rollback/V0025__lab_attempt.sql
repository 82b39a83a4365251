-- Rollback of V0025__lab_attempt
--
-- Safety: the previous schema has no push ledger. If "LabAttempt" or
--   "GitHubPushDelivery" holds rows the rollback refuses with FM002 (counts and
--   the first 20 LabAttempt ids) unless forgea.rollback_preserve = on; then both
--   tables are copied to forgea_archive ("LabAttempt_V0025_<ts>",
--   "GitHubPushDelivery_V0025_<ts>") first, hash chain columns included, so the
--   archive can still be verified.
-- Locks: ACCESS EXCLUSIVE on both tables while they are dropped.

DO $$
DECLARE
    n_att bigint;
    n_del bigint;
    ids text;
BEGIN
    SELECT count(*) INTO n_att FROM public."LabAttempt";
    SELECT count(*) INTO n_del FROM public."GitHubPushDelivery";
    IF n_att + n_del = 0 THEN
        RETURN;
    END IF;
    IF coalesce(current_setting('forgea.rollback_preserve', true), '') <> 'on'
        THEN
        SELECT string_agg(x."id"::text, ', ') INTO ids
        FROM (
            SELECT a."id" FROM public."LabAttempt" AS a
            ORDER BY a."id" LIMIT 20
        ) AS x;
        RAISE EXCEPTION
            'rollback of V0025__lab_attempt refused: LabAttempt holds % rows, GitHubPushDelivery % rows',
            n_att, n_del
            USING ERRCODE = 'FM002',
            DETAIL = format('LabAttempt ids (first 20): %s', coalesce(ids, '-')),
            HINT = 'SET forgea.rollback_preserve = on to archive them first.';
    END IF;
    PERFORM forgea_archive_copy('public."LabAttempt"', 'V0025');
    PERFORM forgea_archive_copy('public."GitHubPushDelivery"', 'V0025');
END;
$$;

DROP TABLE "GitHubPushDelivery";
DROP TABLE "LabAttempt";
DROP FUNCTION lab_attempt_changed_files_valid(jsonb);
