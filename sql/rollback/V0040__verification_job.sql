-- Rollback of V0040__verification_job
--
-- Safety: jobs exist nowhere else. While the table holds rows the rollback
--   refuses with FM002 naming up to 20 job ids, unless
--   forgea.rollback_preserve = on: then the table is copied to forgea_archive
--   first, and V0040 restores it on the next apply. Attempts that reference jobs stay in "VerificationAttempt" (its own
--   rollback, V0009, decides about them); their job ids then point into the
--   archive, and a later apply of V0040 does not trip over them (no FK).
-- Locks: ACCESS EXCLUSIVE on "VerificationJob" while dropped; SHARE ROW
--   EXCLUSIVE on "LabAttempt", "LabSession" and "LabVersion" for an instant.
--   The index on "LabAttempt" belongs to V0039 and is dropped by its rollback.

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
        'V0040__verification_job', 'VerificationJob holds jobs',
        'VerificationJob ids (first 20): ' || ids
    ) THEN
        PERFORM forgea_archive_if_preserving('"VerificationJob"', 'V0040');
    END IF;
END;
$$;

DROP TABLE "VerificationJob";

DROP TYPE "VerificationJobStatus";
