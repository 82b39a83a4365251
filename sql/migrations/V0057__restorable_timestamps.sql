-- V0057__restorable_timestamps: the timestamps forgea_app writes stay restorable
-- harness: precondition restorable_timestamps
-- harness: precondition restorable_timestamps_verification_token
--
-- What: a pre-flight, then CHECK constraints added NOT VALID (checked for every
--   new or updated row at once, validated for old rows by V0058) on every
--   timestamp column forgea_app writes directly, bounding it to
--   1970-01-01 .. 9999-12-31 23:59:59.999:
--     "User_createdAt_check"
--     "User_updatedAt_check"
--     "Session_expires_check"
--     "VerificationToken_expires_check"
--     "AuthSession_expires_check"
--     "LabSession_startedAt_check"
--     "LabSession_lastActivityAt_check"
--     "AuditLog_createdAt_check"
--   (the app's Prisma client writes them, or anyone holding its credentials:
--   the auth tables, a session's start and last activity, an AuditLog row).
--   A refusal is SQLSTATE 23514 naming the constraint. The pre-flight refuses
--   (FM001, nothing changed) when existing rows fall outside, listing up to 20
--   per table.
-- Why: a timestamp(3) value such as '294276-12-31 23:59:59.9999' rounds to
--   294277-01-01, which PostgreSQL stores and pg_dump writes out but no restore
--   can read back ("timestamp out of range"): one such row makes a restore of
--   the whole dump fail, and in AuditLog (append-only) or as a session's start
--   (immutable since V0051, and referenced by the ledgers) it can never be
--   repaired. The bounds are also what the app can really send (JavaScript
--   Dates of the present, session expiries, database defaults). The pack's own
--   tables get their timestamps from the database or from the API functions,
--   which bound them (V0056).
-- Locks: the pre-flight reads the tables (ACCESS SHARE, writes continue); each
--   ADD CONSTRAINT ... NOT VALID takes ACCESS EXCLUSIVE on its table for an
--   instant (no scan), held to the end of the file's transaction. Referencing
--   tables come before the tables they reference (AuditLog, LabSession, the
--   auth tables, then "User"): an app INSERT locks its table, then the
--   referenced one for the foreign key check, so taking them in the opposite
--   order would deadlock with it.
-- Rollback: drops the constraints.

DO $$
DECLARE
    n bigint;
    rows_text text;
BEGIN
    SELECT count(*), string_agg(x.r, '; ')
    INTO n, rows_text
    FROM (
        (
            SELECT format('User %s (createdAt %s, updatedAt %s)', t."id"::text, t."createdAt", t."updatedAt") AS r
            FROM public."User" AS t
            WHERE
                t."createdAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
                OR t."updatedAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
            LIMIT 20
        )
        UNION ALL
        (
            SELECT format('Session %s (expires %s)', t."id"::text, t."expires") AS r
            FROM public."Session" AS t
            WHERE
                t."expires" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
            LIMIT 20
        )
        UNION ALL
        (
            SELECT format('VerificationToken %s (expires %s)', t."identifier", t."expires") AS r
            FROM public."VerificationToken" AS t
            WHERE
                t."expires" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
            LIMIT 20
        )
        UNION ALL
        (
            SELECT format('AuthSession %s (expires %s)', t."id"::text, t."expires") AS r
            FROM public."AuthSession" AS t
            WHERE
                t."expires" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
            LIMIT 20
        )
        UNION ALL
        (
            SELECT format('LabSession %s (startedAt %s, lastActivityAt %s)', t."id"::text, t."startedAt", t."lastActivityAt") AS r
            FROM public."LabSession" AS t
            WHERE
                t."startedAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
                OR t."lastActivityAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
            LIMIT 20
        )
        UNION ALL
        (
            SELECT format('AuditLog %s (createdAt %s)', t."id"::text, t."createdAt") AS r
            FROM public."AuditLog" AS t
            WHERE
                t."createdAt" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
            LIMIT 20
        )
    ) AS x;
    IF n > 0 THEN
        RAISE EXCEPTION
            'V0057 pre-flight failed: rows with timestamps outside 1970-01-01 .. 9999-12-31 23:59:59.999'
            USING ERRCODE = 'FM001',
            DETAIL = format('offending rows (first 20 per table): %s', rows_text),
            HINT = 'Values after year 294276 cannot be restored from a dump at all; decide with the application owners what these rows should hold. Nothing was changed.';
    END IF;
END;
$$;

ALTER TABLE "AuditLog"
ADD CONSTRAINT "AuditLog_createdAt_check"
CHECK ("createdAt" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_startedAt_check"
CHECK ("startedAt" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_lastActivityAt_check"
CHECK ("lastActivityAt" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;

ALTER TABLE "Session"
ADD CONSTRAINT "Session_expires_check"
CHECK ("expires" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;

ALTER TABLE "AuthSession"
ADD CONSTRAINT "AuthSession_expires_check"
CHECK ("expires" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;

ALTER TABLE "VerificationToken"
ADD CONSTRAINT "VerificationToken_expires_check"
CHECK ("expires" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;

ALTER TABLE "User"
ADD CONSTRAINT "User_createdAt_check"
CHECK ("createdAt" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;

ALTER TABLE "User"
ADD CONSTRAINT "User_updatedAt_check"
CHECK ("updatedAt" BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999') NOT VALID;
