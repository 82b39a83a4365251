-- V0010__lab_session_constraints: pre-flight, then the session and timestamp constraints NOT VALID
-- harness: precondition session_lifecycle_columns
-- harness: precondition restorable_timestamps
-- harness: precondition restorable_timestamps_verification_token
--
-- What:
--   a pre-flight check, then two CHECK constraints added NOT VALID (checked
--   for every new or updated row at once, validated for old rows by V0011):
--     "LabSession_labVersionId_not_null": "labVersionId" IS NOT NULL (becomes a
--       real NOT NULL in V0012 without a table scan);
--     "LabSession_completedAt_check": completedAt is set exactly when the
--       status is terminal (VERIFIED_PASS, FAILED).
--   The pre-flight refuses (FM001, nothing changed) when existing rows would
--   violate them: sessions without a version (V0008 did not finish, or a lab has
--   no version) and sessions whose completedAt disagrees with their status.
--   DETAIL lists up to 20 ids and values; HINT says what a DBA can do.
--
--   a pre-flight, then CHECK constraints added NOT VALID (checked for every
--   new or updated row at once, validated for old rows by V0011) on every
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
-- Why: CONTRACT section 4; NOT VALID + VALIDATE in separate transactions keeps
--   the ACCESS EXCLUSIVE lock of ADD CONSTRAINT to an instant.
-- Transaction: yes.
-- Locks: the pre-flights read the tables (ACCESS SHARE, no blocking), all of
--   them before the first ADD CONSTRAINT; ADD CONSTRAINT ... NOT VALID takes
--   ACCESS EXCLUSIVE on each table for an instant (no scan), held to the
--   commit, taken with 100 ms attempts and retries (with a long
--   reader in front at 1M: 10 retries, 56 s of waiting for this file, the
--   app's longest wait 0.16 s).
-- Pre-conditions: every session has a version and a completedAt consistent
--   with its status (after V0008); every timestamp is restorable.
-- Rollback: drops the constraints (ACCESS EXCLUSIVE per table, an instant).

DO $$
DECLARE
    n bigint;
    rows_text text;
BEGIN
    SELECT count(*), string_agg(format('%s (lab %s, status %s, completedAt %s)',
        x."id", x."labId", x."status", coalesce(x."completedAt"::text, 'NULL')), '; ')
    INTO n, rows_text
    FROM (
        SELECT s."id", s."labId", s."status", s."completedAt"
        FROM public."LabSession" AS s
        WHERE
            s."labVersionId" IS NULL
            OR (s."status"::text IN ('VERIFIED_PASS', 'FAILED'))
            <> (s."completedAt" IS NOT NULL)
        ORDER BY s."id"
        LIMIT 20
    ) AS x;
    IF n > 0 THEN
        RAISE EXCEPTION
            'V0010 pre-flight failed: LabSession rows without labVersionId or with completedAt inconsistent with status'
            USING ERRCODE = 'FM001',
            DETAIL = format('offending sessions (first 20): %s', rows_text),
            HINT = 'List them all: psql -f sql/preflight/session_lifecycle_columns.sql. '
            || 'Rerun V0008 (resumable backfill) and check that every lab has a '
            || 'LabVersion; then apply again. Nothing was changed.';
    END IF;
END;
$$;

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
            'V0010 pre-flight failed: rows with timestamps outside 1970-01-01 .. 9999-12-31 23:59:59.999'
            USING ERRCODE = 'FM001',
            DETAIL = format('offending rows (first 20 per table): %s', rows_text),
            HINT = 'Values after year 294276 cannot be restored from a dump at all; decide with the application owners what these rows should hold. Nothing was changed.';
    END IF;
END;
$$;

-- Every pre-flight above ran before the first ACCESS EXCLUSIVE lock: the
-- timestamp pre-flight reads AuditLog (10M rows at 1M sessions: about 2 s),
-- and run after the LabSession constraints it held the application's LabSession
-- writes for that long (the release chain's first 1M run: 2.1 s).
ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_labVersionId_not_null"
CHECK ("labVersionId" IS NOT NULL) NOT VALID;

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_completedAt_check"
CHECK (
    ("status"::text IN ('VERIFIED_PASS', 'FAILED'))
    = ("completedAt" IS NOT NULL)
) NOT VALID;

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
