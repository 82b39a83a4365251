-- Rollback of V0005__lab_status_failed: rebuild "LabStatus" without FAILED
--
-- Safety: refuses with FM002, naming up to 20 session ids, while any LabSession
--   is FAILED (the old type cannot hold them; there is no preservation path
--   because a FAILED session has no truthful old-schema status).
-- Locks: ACCESS EXCLUSIVE on "LabSession" while its status column is retyped
--   (a table rewrite: run in a maintenance window on a large table).

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
            'rollback of V0005__lab_status_failed refused: LabSession rows are FAILED'
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
