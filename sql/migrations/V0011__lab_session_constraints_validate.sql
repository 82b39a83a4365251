-- V0011__lab_session_constraints_validate: the timestamp pre-flight, then validate the constraints of V0010
-- harness: precondition restorable_timestamps
-- harness: precondition restorable_timestamps_verification_token
--
-- What:
--   a pre-flight: existing rows whose timestamps fall outside the bounds of
--   V0010's CHECKs (1970-01-01 .. 9999-12-31 23:59:59.999) refuse the file
--   (FM001, nothing changed), listing up to 20 per table; the constraints of
--   V0010 stay NOT VALID, checking every new row, until the rows are fixed
--   and the file is applied again. (Here, not in V0010: this file takes no
--   lock the application waits on, and is not retried on lock timeouts.)
--
--   VALIDATE CONSTRAINT for "LabSession_labVersionId_fkey" (V0006),
--   "LabSession_labVersionId_not_null" and "LabSession_completedAt_check"
--   (V0010): existing rows are scanned once; V0010's pre-flight already showed
--   they hold.
--
--   VALIDATE CONSTRAINT for each timestamp CHECK of V0010: existing rows are
--   scanned once; the pre-flight above already showed they hold.
-- Why: the constraints hold for old rows too, proven by PostgreSQL, without
--   blocking the app while it scans.
-- Transaction: yes.
-- Locks: the pre-flight reads the tables (ACCESS SHARE); VALIDATE CONSTRAINT
--   takes SHARE UPDATE EXCLUSIVE on each table (reads and writes continue)
--   while it scans, and ROW SHARE on "LabVersion" for the foreign key. At 1M
--   sessions: a few seconds of scanning, no app wait.
-- Pre-conditions: every timestamp is restorable (the pre-flight above); those
--   of V0010 (checked again by the scan).
-- Rollback: nothing to undo (a validated constraint is dropped by V0010's
--   rollback).

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
            'V0011 pre-flight failed: rows with timestamps outside 1970-01-01 .. 9999-12-31 23:59:59.999'
            USING ERRCODE = 'FM001',
            DETAIL = format('offending rows (first 20 per table): %s', rows_text),
            HINT = 'Values after year 294276 cannot be restored from a dump at all; decide with the application owners what these rows should hold. Nothing was changed.';
    END IF;
END;
$$;

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_labVersionId_fkey";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_labVersionId_not_null";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_completedAt_check";

ALTER TABLE "AuditLog"
VALIDATE CONSTRAINT "AuditLog_createdAt_check";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_startedAt_check";

ALTER TABLE "LabSession"
VALIDATE CONSTRAINT "LabSession_lastActivityAt_check";

ALTER TABLE "Session"
VALIDATE CONSTRAINT "Session_expires_check";

ALTER TABLE "AuthSession"
VALIDATE CONSTRAINT "AuthSession_expires_check";

ALTER TABLE "VerificationToken"
VALIDATE CONSTRAINT "VerificationToken_expires_check";

ALTER TABLE "User"
VALIDATE CONSTRAINT "User_createdAt_check";

ALTER TABLE "User"
VALIDATE CONSTRAINT "User_updatedAt_check";
