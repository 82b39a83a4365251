-- Rollback of V0025__lab_attempt
--
-- Safety: the previous schema has no push ledger. If "LabAttempt" or
--   "GitHubPushDelivery" holds rows the rollback refuses with FM002 (counts and
--   the first 20 LabAttempt ids) unless forgea.rollback_preserve = on; then both
--   tables are copied to forgea_archive ("LabAttempt_V0025_<ts>",
--   "GitHubPushDelivery_V0025_<ts>") first, hash chain columns included, so the
--   archive can still be verified; V0025 restores both, hashes unchanged, on
--   the next apply.
-- Locks: ACCESS EXCLUSIVE on both tables while they are dropped.

DO $$
DECLARE
    n_att bigint := (SELECT count(*) FROM public."LabAttempt");
    n_del bigint := (SELECT count(*) FROM public."GitHubPushDelivery");
    ids text;
BEGIN
    IF n_att + n_del = 0 THEN
        RETURN;
    END IF;
    SELECT string_agg(x."id"::text, ', ') INTO ids
    FROM (
        SELECT a."id" FROM public."LabAttempt" AS a
        ORDER BY a."id" LIMIT 20
    ) AS x;
    IF forgea_rollback_preserving(
        'V0025__lab_attempt',
        format('LabAttempt holds %s rows, GitHubPushDelivery %s rows', n_att, n_del),
        'LabAttempt ids (first 20): ' || coalesce(ids, '-')
    ) THEN
        PERFORM forgea_archive_if_preserving('public."LabAttempt"', 'V0025');
        PERFORM forgea_archive_if_preserving('public."GitHubPushDelivery"', 'V0025');
    END IF;
END;
$$;

DROP TABLE "GitHubPushDelivery";
DROP TABLE "LabAttempt";
DROP FUNCTION lab_attempt_changed_files_valid(jsonb);
