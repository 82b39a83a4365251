-- V0017__lab_session_one_active: at most one active session per user and lab
-- harness: no-transaction
-- harness: precondition one_active_session
--
-- What: a pre-flight check, then the partial unique index
--   "LabSession_userId_labId_active_key" on ("userId", "labId") WHERE the status
--   is active (IN_PROGRESS, STUCK, DEFERRED). Two concurrent inserts of an active
--   session for the same user and lab: exactly one wins, the other gets 23505.
--   The pre-flight refuses (FM001, nothing changed) when users already have two
--   active sessions of one lab; DETAIL lists them (first 20), HINT tells the DBA
--   to move the extra sessions to DEFERRED->FAILED or FAILED first.
-- Why: CONTRACT section 4.
-- Locks: CREATE INDEX CONCURRENTLY takes SHARE UPDATE EXCLUSIVE: reads and
--   writes go on while it builds. If it is interrupted it leaves an INVALID
--   index; the harness drops it (DROP INDEX CONCURRENTLY) before rerunning this
--   file; with psql, drop it by hand first. IF NOT EXISTS makes a rerun after a
--   successful build a no-op. A duplicate inserted between the pre-flight and the
--   build makes the build fail (23505): fix the rows and rerun.
-- Rollback: DROP INDEX CONCURRENTLY.

DO $$
DECLARE
    n bigint;
    rows_text text;
BEGIN
    SELECT count(*), string_agg(format('user %s lab %s: sessions %s',
        d."userId", d."labId", d.ids), '; ')
    INTO n, rows_text
    FROM (
        SELECT
            s."userId",
            s."labId",
            string_agg(s."id"::text, ', ' ORDER BY s."startedAt") AS ids
        FROM public."LabSession" AS s
        WHERE s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
        GROUP BY s."userId", s."labId"
        HAVING count(*) > 1
        ORDER BY s."userId", s."labId"
        LIMIT 20
    ) AS d;
    IF n > 0 THEN
        RAISE EXCEPTION
            'V0017 pre-flight failed: users with more than one active session of a lab'
            USING ERRCODE = 'FM001',
            DETAIL = format('duplicates (first 20): %s', rows_text),
            HINT = 'Move all but one of each group to FAILED (or VERIFIED_PASS through verification), then apply again. Nothing was changed.';
    END IF;
END;
$$;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "LabSession_userId_labId_active_key"
ON "LabSession" ("userId", "labId")
WHERE "status" IN ('IN_PROGRESS', 'STUCK', 'DEFERRED');
