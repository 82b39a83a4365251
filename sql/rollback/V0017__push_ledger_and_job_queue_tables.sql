-- Rollback of V0017__push_ledger_and_job_queue_tables
--
-- What: drops "VerificationJob" and its enum, then "GitHubPushDelivery",
--   "LabAttempt" and lab_attempt_changed_files_valid().
-- Safety: the previous schema has no push ledger and no queue. While
--   "VerificationJob" holds rows the rollback refuses with FM002 naming up to
--   20 job ids, and while "LabAttempt" or "GitHubPushDelivery" holds rows with
--   FM002 (counts and the first 20 LabAttempt ids), unless
--   forgea.rollback_preserve = on: then every table is copied to
--   forgea_archive ("<Table>_V0017_<time>") first, hash chain columns and
--   lease token hashes and worker attestations included, so the archive can
--   still be verified; V0017
--   restores them, hashes unchanged, on the next apply. Attempts that
--   reference jobs stay in "VerificationAttempt" (V0006's rollback decides
--   about them).
-- Transaction: yes.
-- Locks: ACCESS EXCLUSIVE on the three tables while they are dropped; SHARE
--   ROW EXCLUSIVE on "LabSession" and "LabVersion" for an instant.

DO $$
DECLARE
    ids text;
BEGIN
    SELECT string_agg(x."id"::text, ', ')
    INTO ids
    FROM (
        SELECT "id" FROM "VerificationJob" ORDER BY "createdAt", "id" LIMIT 20
    ) AS x;
    IF ids IS NOT NULL AND forgea_rollback_preserving(
        'V0017__push_ledger_and_job_queue_tables', 'VerificationJob holds jobs',
        'VerificationJob ids (first 20): ' || ids
    ) THEN
        PERFORM forgea_archive_if_preserving('"VerificationJob"', 'V0017');
    END IF;
END;
$$;

DROP TABLE "VerificationJob";

DROP TYPE "VerificationJobStatus";

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
        'V0017__push_ledger_and_job_queue_tables',
        format('LabAttempt holds %s rows, GitHubPushDelivery %s rows', n_att, n_del),
        'LabAttempt ids (first 20): ' || coalesce(ids, '-')
    ) THEN
        PERFORM forgea_archive_if_preserving('public."LabAttempt"', 'V0017');
        PERFORM forgea_archive_if_preserving('public."GitHubPushDelivery"', 'V0017');
    END IF;
END;
$$;

DROP TABLE "GitHubPushDelivery";

DROP TABLE "LabAttempt";

DROP FUNCTION lab_attempt_changed_files_valid(jsonb);
