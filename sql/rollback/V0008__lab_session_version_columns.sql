-- Rollback of V0008__lab_session_version_columns
--
-- Safety: values that V0010's backfill would recreate (version 1 of the lab;
--   completedAt of a session that was VERIFIED_PASS before the migration, taken
--   from its VerificationLog or lastActivityAt) can be dropped. Anything else
--   (a later lab version, a completion recorded by the new lifecycle) makes the
--   rollback refuse with FM002 naming the sessions, unless
--   forgea.rollback_preserve = on. With preservation on, ("id", "labId",
--   "labVersionId", "completedAt") of every session are archived to forgea_archive
--   ("LabSession_version_columns_V0008_<time>") first; V0008 puts them back on
--   the next apply.
-- Locks: ACCESS EXCLUSIVE on "LabSession" for an instant (DROP COLUMN is
--   catalog-only); the check reads the table once.

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
            'V0008__lab_session_version_columns',
            'sessions hold a version or completion the old schema cannot rebuild',
            'LabSession ids (first 20): ' || ids
        );
    END IF;
    IF current_setting('forgea.rollback_preserve', true) = 'on' THEN
        CREATE TEMP TABLE "LabSession_version_columns" ON COMMIT DROP AS
        SELECT "id", "labId", "labVersionId", "completedAt" FROM "LabSession";
        PERFORM forgea_archive_if_preserving(
            'pg_temp."LabSession_version_columns"', 'V0008'
        );
    END IF;
END;
$$;

ALTER TABLE "LabSession"
DROP CONSTRAINT "LabSession_labVersionId_fkey";

ALTER TABLE "LabSession"
DROP COLUMN "completedAt",
DROP COLUMN "labVersionId";
