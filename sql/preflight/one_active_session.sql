-- one_active_session: at most one active session per user and lab
--
-- Guards: the partial unique index "LabSession_userId_labId_active_key" on
--   ("userId", "labId") WHERE status IN ('IN_PROGRESS', 'STUCK', 'DEFERRED'):
--   CREATE UNIQUE INDEX fails on existing duplicates, so the file that builds
--   it refuses first (FM001) when a user has two active sessions of one lab.
-- Needed by: the file that creates that index (lab_session_one_active today).
-- Lists: every session of every (user, lab) group with more than one active
--   session, oldest first within the group.
-- Remedy: keep one session of each group active and close the others, with the
--   client the application runs that day:
--   - today's Prisma client (LabStatus without FAILED): DEFERRED is legal from
--     IN_PROGRESS and STUCK and readable, but it is itself active, so it does
--     NOT clear this pre-condition; the only status that client reads and
--     that is not active is VERIFIED_PASS, which only a real verification
--     may set. So before the window: let verification close a session that
--     really passed; delete an extra session that holds no evidence (no
--     VerificationLog, no ResumeBullet row) after exporting it; ask the
--     application owners about the rest.
--   - once the client regenerated from prisma/schema.prisma runs (it reads
--     FAILED): move the extra sessions to FAILED (legal from IN_PROGRESS,
--     STUCK and DEFERRED). A FAILED session closes the rollback below the
--     file that adds FAILED (docs/dba.md, "Pre-flight").
SELECT
    s."userId",
    s."labId",
    s."id" AS "sessionId",
    s."status"::text AS "status",
    s."startedAt",
    s."userForkUrl"
FROM public."LabSession" AS s
WHERE
    s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
    AND (s."userId", s."labId") IN (
        SELECT
            d."userId",
            d."labId"
        FROM public."LabSession" AS d
        WHERE d."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
        GROUP BY d."userId", d."labId"
        HAVING count(*) > 1
    )
ORDER BY s."userId", s."labId", s."startedAt", s."id";
