-- Rollback of V0004__lab_version
--
-- What: drops "LabVersion", then rebuilds "LabStatus" without FAILED.
-- Safety: version 1 of each lab is a copy of "Lab" and can be rebuilt; later
--   versions are history found nowhere else: if any lab has a version above 1
--   the rollback refuses (FM002, naming the labs) unless the session set
--   forgea.rollback_preserve = on, which copies every row (version 1 included,
--   so that ids come back) to forgea_archive ("LabVersion_V0004_<time>") first;
--   V0004 restores them on the next apply. While any session is FAILED it
--   refuses (FM002, naming up to 20 sessions), preservation or not: the old
--   type cannot hold FAILED and no old status is a truthful stand-in (the
--   one-way door, docs/dba.md).
-- Transaction: yes.
-- Locks: ACCESS EXCLUSIVE on "LabVersion" while it is dropped; ACCESS
--   EXCLUSIVE on "LabSession" while its status column is retyped (a table
--   rewrite: about 2 s per 1M sessions; maintenance window).

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
            'V0004__lab_version', 'labs have versions above 1',
            'labs (first 20): ' || labs
        );
    END IF;
    PERFORM forgea_archive_if_preserving('"LabVersion"', 'V0004');
END;
$$;

DROP TABLE "LabVersion";

DO $$
DECLARE
    n bigint;
    ids text;
BEGIN
    SELECT count(*), string_agg(s."id"::text, ', ')
    INTO n, ids
    FROM (
        SELECT "id" FROM "LabSession"
        WHERE "status"::text = 'FAILED' ORDER BY "id" LIMIT 20
    ) AS s;
    IF n > 0 THEN
        RAISE EXCEPTION
            'rollback of V0004__lab_version refused: LabSession rows are FAILED'
            USING ERRCODE = 'FM002',
            DETAIL = format('sessions (first 20): %s', ids),
            HINT = 'The previous schema cannot represent FAILED sessions.';
    END IF;
END;
$$;

ALTER TYPE "LabStatus" RENAME TO "LabStatus_with_failed";

CREATE TYPE "LabStatus" AS ENUM (
    'IN_PROGRESS', 'STUCK', 'VERIFIED_PASS', 'DEFERRED'
);

ALTER TABLE "LabSession" ALTER COLUMN "status" DROP DEFAULT;

ALTER TABLE "LabSession"
ALTER COLUMN "status" TYPE "LabStatus" USING "status"::text::"LabStatus";

ALTER TABLE "LabSession"
ALTER COLUMN "status" SET DEFAULT 'IN_PROGRESS';

DROP TYPE "LabStatus_with_failed";
