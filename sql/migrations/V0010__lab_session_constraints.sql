-- V0010__lab_session_constraints: the session pre-flight, then the session and timestamp constraints NOT VALID
-- harness: precondition session_lifecycle_columns
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
--   CHECK constraints added NOT VALID (checked for every new or updated row
--   at once; V0011 checks the old rows, refusing with a list, and validates) on every
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
--   A refusal is SQLSTATE 23514 naming the constraint. Their pre-flight
--   (existing rows outside the bounds) is V0011's: it reads AuditLog (10M
--   rows at 1M sessions, 2-3 s), which here would either run under
--   LabSession's ACCESS EXCLUSIVE lock (the release chain's first 1M run:
--   the app waited 2.1 s) or be read again on every lock retry (second run:
--   8 retries, 33.5 s for this file).
-- Why: CONTRACT section 4; NOT VALID + VALIDATE in separate transactions keeps
--   the ACCESS EXCLUSIVE lock of ADD CONSTRAINT to an instant.
-- Transaction: yes.
-- Locks: the pre-flight reads LabSession (ACCESS SHARE, no blocking) before
--   the first ADD CONSTRAINT; ADD CONSTRAINT ... NOT VALID takes ACCESS
--   EXCLUSIVE on each table for an instant (no scan), held to the commit,
--   taken with 100 ms attempts and retries (each retry reads LabSession
--   again: about 0.5 s at 1M sessions).
-- Pre-conditions: every session has a version and a completedAt consistent
--   with its status (after V0008). The timestamps' are V0011's.
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
