-- Rollback of V0006__lab_session_columns_and_verification_attempt
--
-- What: drops "VerificationAttempt" and "VerificationResult", then the foreign
--   key and the two session columns.
-- Safety: attempts that are copies of "VerificationLog" rows (same id, session
--   and commit) are rebuilt by V0009 and may be dropped; any other attempt
--   makes the rollback refuse with FM002, naming the ids. Session values that
--   V0008 would recreate (version 1 of the lab; completedAt of a session that
--   was VERIFIED_PASS before the migration) can be dropped; anything else (a
--   later lab version, a completion recorded by the new lifecycle) refuses
--   with FM002 naming the sessions. With forgea.rollback_preserve = on, the
--   whole attempt table and ("id", "labId", "labVersionId", "completedAt") of
--   every session are archived first and V0006 puts them back on the next
--   apply.
-- Transaction: yes.
-- Locks: ACCESS EXCLUSIVE on "VerificationAttempt" while it is dropped and on
--   "LabSession" for an instant (DROP COLUMN is catalog-only); the checks read
--   both tables once.

DO $$
DECLARE
    ids text;
BEGIN
    SELECT string_agg(x."id"::text, ', ')
    INTO ids
    FROM (
        SELECT a."id"
        FROM "VerificationAttempt" AS a
        WHERE NOT EXISTS (
            SELECT 1 FROM "VerificationLog" AS vl
            WHERE
                vl."id" = a."id"
                AND vl."sessionId" = a."sessionId"
                AND vl."commitSha" = a."commitSha"
        )
        ORDER BY a."id"
        LIMIT 20
    ) AS x;
    IF ids IS NOT NULL THEN
        PERFORM forgea_rollback_preserving(
            'V0006__lab_session_columns_and_verification_attempt',
            'VerificationAttempt holds attempts that VerificationLog cannot hold',
            'VerificationAttempt ids (first 20): ' || ids
        );
    END IF;
    PERFORM forgea_archive_if_preserving('"VerificationAttempt"', 'V0006');
END;
$$;

DROP TABLE "VerificationAttempt";

DROP TYPE "VerificationResult";

DO $$
DECLARE
    ids text;
BEGIN
    SELECT string_agg(x."id"::text, ', ')
    INTO ids
    FROM (
        SELECT s."id"
        FROM "LabSession" AS s
        LEFT JOIN "LabVersion" AS v ON s."labVersionId" = v."id"
        LEFT JOIN "VerificationLog" AS vl ON s."id" = vl."sessionId"
        WHERE coalesce(v."versionNumber", 1) <> 1
            OR (
                s."completedAt" IS NOT NULL
                AND s."completedAt"
                IS DISTINCT FROM coalesce(vl."verifiedAt", s."lastActivityAt")
            )
        ORDER BY s."id"
        LIMIT 20
    ) AS x;
    IF ids IS NOT NULL THEN
        PERFORM forgea_rollback_preserving(
            'V0006__lab_session_columns_and_verification_attempt',
            'sessions hold a version or completion the old schema cannot rebuild',
            'LabSession ids (first 20): ' || ids
        );
    END IF;
    IF current_setting('forgea.rollback_preserve', true) = 'on' THEN
        CREATE TEMP TABLE "LabSession_version_columns" ON COMMIT DROP AS
        SELECT "id", "labId", "labVersionId", "completedAt" FROM "LabSession";
        PERFORM forgea_archive_if_preserving(
            'pg_temp."LabSession_version_columns"', 'V0006'
        );
    END IF;
END;
$$;

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_labVersionId_fkey";

ALTER TABLE "LabSession"
DROP COLUMN "completedAt",
DROP COLUMN "labVersionId";
