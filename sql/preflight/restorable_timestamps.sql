-- restorable_timestamps: the timestamps forgea_app writes lie within
--   1970-01-01 .. 9999-12-31 23:59:59.999
--
-- Guards: the CHECK constraints "<Table>_<column>_check" on User.createdAt,
--   User.updatedAt, Session.expires, AuthSession.expires, LabSession.startedAt,
--   LabSession.lastActivityAt and AuditLog.createdAt (added NOT VALID, then
--   validated): the file that adds them refuses first (FM001) on rows outside.
--   A value past year 294276 is stored and dumped but no restore reads it back;
--   a LabSession's startedAt is hashed by the push ledger.
-- Needed by: the file that adds those constraints (restorable_timestamps today).
-- Lists: table, row id, column and value (as text: the value may not fit a
--   client's date type), by table and id. VerificationToken is checked by
--   restorable_timestamps_verification_token (forgea_readonly may not read it).
-- Remedy: decide with the application owners what each row should hold (an
--   expired auth row can be deleted: the user signs in again); AuditLog rows
--   are append-only and cannot be changed by the application: a DBA corrects
--   them as the owner in a reviewed change. No status change is involved, so
--   this works with any client.
SELECT
    x."table",
    x."id",
    x."column",
    x."value"
FROM (
    SELECT
        'User' AS "table",
        t."id"::text AS "id",
        'createdAt' AS "column",
        t."createdAt"::text AS "value"
    FROM public."User" AS t
    WHERE t."createdAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
    UNION ALL
    SELECT
        'User',
        t."id"::text,
        'updatedAt',
        t."updatedAt"::text
    FROM public."User" AS t
    WHERE t."updatedAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
    UNION ALL
    SELECT
        'Session',
        t."id"::text,
        'expires',
        t."expires"::text
    FROM public."Session" AS t
    WHERE t."expires" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
    UNION ALL
    SELECT
        'AuthSession',
        t."id"::text,
        'expires',
        t."expires"::text
    FROM public."AuthSession" AS t
    WHERE t."expires" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
    UNION ALL
    SELECT
        'LabSession',
        t."id"::text,
        'startedAt',
        t."startedAt"::text
    FROM public."LabSession" AS t
    WHERE t."startedAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
    UNION ALL
    SELECT
        'LabSession',
        t."id"::text,
        'lastActivityAt',
        t."lastActivityAt"::text
    FROM public."LabSession" AS t
    WHERE
        t."lastActivityAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
    UNION ALL
    SELECT
        'AuditLog',
        t."id"::text,
        'createdAt',
        t."createdAt"::text
    FROM public."AuditLog" AS t
    WHERE t."createdAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
) AS x
ORDER BY x."table", x."id", x."column";
