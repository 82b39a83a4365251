-- session_lifecycle_columns: every session has a lab version, and completedAt
--   is set exactly when its status is terminal
-- preflight: when-next
--
-- Guards: the CHECK constraints "LabSession_labVersionId_not_null" and
--   "LabSession_completedAt_check" (added NOT VALID, then validated): the file
--   that adds them refuses first (FM001) on rows that would violate them.
-- Needed by: the file that adds those constraints (lab_session_constraints
--   today).
-- When: the columns are created and filled by earlier files of the chain (the
--   session backfill), so this is evaluated only when its file is the next one
--   to run (on production before the chain it is deferred: the columns do not
--   exist yet); `harness apply` evaluates it right before that file.
-- Lists: the sessions without "labVersionId", or whose "completedAt" disagrees
--   with their status, by id.
-- Remedy: rerun the session backfill (`harness apply` resumes it) and check that
--   every lab has a LabVersion; a terminal session without completedAt, or an
--   active one with it, was written by hand: set completedAt to the time the
--   session ended (terminal) or NULL (active). No status change is needed, so
--   this works with any client.
SELECT
    s."id" AS "sessionId",
    s."labId",
    s."status"::text AS "status",
    s."completedAt",
    s."labVersionId"
FROM public."LabSession" AS s
WHERE
    s."labVersionId" IS NULL
    OR (s."status"::text IN ('VERIFIED_PASS', 'FAILED'))
    <> (s."completedAt" IS NOT NULL)
ORDER BY s."id";
