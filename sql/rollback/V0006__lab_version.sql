-- Rollback of V0006__lab_version: drop "LabVersion"
--
-- Safety: version 1 of each lab is a copy of "Lab" and can be rebuilt; later
--   versions are history found nowhere else. If any lab has a version above 1
--   the rollback refuses (FM002, naming the labs) unless the session set
--   forgea.rollback_preserve = on. With preservation on, all rows (version 1
--   included, so that ids come back) are copied to forgea_archive
--   ("LabVersion_V0006_<time>") first, and V0006 restores them on the next apply.
-- Locks: ACCESS EXCLUSIVE on "LabVersion" while it is dropped.

DO $$
DECLARE
    labs text;
BEGIN
    SELECT string_agg(v."labId"::text, ', ')
    INTO labs
    FROM (
        SELECT DISTINCT "labId" FROM "LabVersion"
        WHERE "versionNumber" > 1 ORDER BY "labId" LIMIT 20
    ) AS v;
    IF labs IS NOT NULL THEN
        PERFORM forgea_rollback_preserving(
            'V0006__lab_version', 'labs have versions above 1',
            'labs (first 20): ' || labs
        );
    END IF;
    PERFORM forgea_archive_if_preserving('"LabVersion"', 'V0006');
END;
$$;

DROP TABLE "LabVersion";
