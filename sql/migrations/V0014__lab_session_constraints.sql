-- V0014__lab_session_constraints: pre-flight, then lifecycle constraints NOT VALID
-- harness: precondition session_lifecycle_columns
--
-- What: a pre-flight check, then two CHECK constraints added NOT VALID (checked
--   for every new or updated row at once, validated for old rows by V0015):
--     "LabSession_labVersionId_not_null": "labVersionId" IS NOT NULL (becomes a
--       real NOT NULL in V0016 without a table scan);
--     "LabSession_completedAt_check": completedAt is set exactly when the
--       status is terminal (VERIFIED_PASS, FAILED).
--   The pre-flight refuses (FM001, nothing changed) when existing rows would
--   violate them: sessions without a version (V0012 did not finish, or a lab has
--   no version) and sessions whose completedAt disagrees with their status.
--   DETAIL lists up to 20 ids and values; HINT says what a DBA can do.
-- Why: CONTRACT section 4; NOT VALID + VALIDATE in separate transactions keeps
--   the ACCESS EXCLUSIVE lock of ADD CONSTRAINT to an instant.
-- Locks: the pre-flight reads "LabSession" (ACCESS SHARE, no blocking); ADD
--   CONSTRAINT ... NOT VALID takes ACCESS EXCLUSIVE on "LabSession" for an
--   instant (no scan).
-- Rollback: drops both constraints.

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
            'V0014 pre-flight failed: LabSession rows without labVersionId or with completedAt inconsistent with status'
            USING ERRCODE = 'FM001',
            DETAIL = format('offending sessions (first 20): %s', rows_text),
            HINT = 'Rerun V0012 (resumable backfill) and check that every lab has a LabVersion; then apply again. Nothing was changed.';
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
