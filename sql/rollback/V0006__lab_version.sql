-- Rollback of V0006__lab_version: drop "LabVersion"
--
-- Safety: version 1 of each lab is a copy of "Lab" and can be rebuilt; later
--   versions are history found nowhere else. If any lab has a version above 1
--   the rollback refuses (FM002, naming the labs) unless the session set
--   forgea.rollback_preserve = on, in which case all rows are copied to
--   forgea_archive ("LabVersion_V0006_<time>") first.
-- Locks: ACCESS EXCLUSIVE on "LabVersion" while it is dropped.

DO $$
DECLARE
    n bigint;
    labs text;
BEGIN
    SELECT count(*), string_agg(v."labId"::text, ', ')
    INTO n, labs
    FROM (
        SELECT DISTINCT "labId" FROM "LabVersion"
        WHERE "versionNumber" > 1 ORDER BY "labId" LIMIT 20
    ) AS v;
    IF n = 0 THEN
        RETURN;
    END IF;
    IF coalesce(current_setting('forgea.rollback_preserve', true), '') <> 'on'
        THEN
        RAISE EXCEPTION
            'rollback of V0006__lab_version refused: labs have versions above 1'
            USING ERRCODE = 'FM002',
            DETAIL = format('labs (first 20): %s', labs),
            HINT = 'SET forgea.rollback_preserve = on to archive them first.';
    END IF;
    PERFORM forgea_archive_copy('"LabVersion"', 'V0006');
END;
$$;

DROP TABLE "LabVersion";
