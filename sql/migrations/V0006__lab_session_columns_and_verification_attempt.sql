-- V0006__lab_session_columns_and_verification_attempt: the new session columns and "VerificationAttempt"
--
-- What:
--   adds "labVersionId" (nullable for now; V0008 backfills it, V0010-V0012
--   make it NOT NULL) and "completedAt" (NULL while the session is active), and
--   the foreign key ("labVersionId", "labId") -> "LabVersion" ("id", "labId")
--   added NOT VALID: new and updated rows are checked at once, existing rows are
--   validated later without blocking writes. Because it covers both columns, the
--   database itself guarantees that a session's version belongs to its lab.
--
--   creates the enum "VerificationResult" (PASS, FAIL) and the append-only
--   table "VerificationAttempt" (B6 tasks 48-53): one row per verification run
--   of a session, with the commit, the result, the logs as a JSON object and the
--   verification job that produced it (NULL only for rows copied from the
--   legacy "VerificationLog" by V0009; UNIQUE otherwise). Commit SHAs are
--   lowercase hex of 40 (SHA-1) or 64 (SHA-256) characters; copied legacy rows
--   keep whatever the legacy table held (never rewritten) and `harness verify`
--   reports those that do not match.
--   "VerificationLog" is frozen by V0007's trigger, not here: forgea_app keeps
--   its INSERT privilege so that the app's current client, should it still
--   write a legacy row, is told why (FA001, "VerificationLog is frozen ...")
--   instead of a bare "permission denied".
-- Why: CONTRACT section 4 (B6 tasks 45, 47, 48-53). Both changes are in one
--   file so that "LabSession" queues once for its ACCESS EXCLUSIVE lock.
-- Transaction: yes.
-- Locks: ADD COLUMN without a default is catalog-only but needs ACCESS
--   EXCLUSIVE on "LabSession" for an instant; the harness takes it with
--   100 ms attempts and retries, so the app never waits long behind it (with
--   a long reader in front: 9 retries, 25 s of waiting for this file at 1M,
--   the app's longest wait 0.16 s). ADD CONSTRAINT ... NOT VALID takes SHARE
--   ROW EXCLUSIVE on "LabSession" and "LabVersion" for an instant, no scan.
--   "VerificationAttempt" is new. A restore (only after a preserving
--   rollback) updates every archived session while the lock is held (about
--   a second per 100k sessions; maintenance window).
-- Pre-conditions: none.
-- Rollback: refuses (FM002) when "VerificationAttempt" holds attempts that are
--   not copies of "VerificationLog" rows, or a session holds a version or a
--   completion the previous schema cannot rebuild, unless
--   forgea.rollback_preserve is on, which archives them first; then drops the
--   table, the enum, the constraint and both columns (ACCESS EXCLUSIVE on
--   "LabSession" for an instant, catalog-only).

ALTER TABLE "LabSession"
ADD COLUMN "labVersionId" UUID,
ADD COLUMN "completedAt" TIMESTAMP(3);

ALTER TABLE "LabSession"
ADD CONSTRAINT "LabSession_labVersionId_fkey"
FOREIGN KEY ("labVersionId", "labId")
REFERENCES "LabVersion" ("id", "labId")
ON DELETE RESTRICT ON UPDATE RESTRICT
NOT VALID;

SELECT forgea_archive_restore_columns(
    '"LabSession"', 'LabSession_version_columns', 'V0006',
    ARRAY['labVersionId', 'completedAt']
);

CREATE TYPE "VerificationResult" AS ENUM ('PASS', 'FAIL');

CREATE TABLE "VerificationAttempt" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL,
    "commitSha" TEXT NOT NULL,
    "result" "VerificationResult" NOT NULL,
    "logs" JSONB NOT NULL,
    "verificationJobId" UUID,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    CONSTRAINT "VerificationAttempt_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "VerificationAttempt_logs_check" CHECK (
        jsonb_typeof("logs") = 'object'
    ),
    -- The NULL test first: OR stops there for the legacy copies of V0009,
    -- which then skip a regex they never needed (at 100k rows the saving is
    -- inside the run-to-run noise of V0009, about 1 s in 36).
    CONSTRAINT "VerificationAttempt_commitSha_check" CHECK (
        "verificationJobId" IS NULL
        OR "commitSha" ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'
    ),
    CONSTRAINT "VerificationAttempt_sessionId_fkey" FOREIGN KEY ("sessionId")
    REFERENCES "LabSession" ("id") ON DELETE RESTRICT ON UPDATE RESTRICT
);

CREATE UNIQUE INDEX "VerificationAttempt_verificationJobId_key"
ON "VerificationAttempt" ("verificationJobId");

CREATE INDEX "VerificationAttempt_sessionId_createdAt_idx"
ON "VerificationAttempt" ("sessionId", "createdAt");

SELECT forgea_archive_restore('"VerificationAttempt"', 'V0006');

GRANT SELECT ON "VerificationAttempt"
TO forgea_app, forgea_worker, forgea_readonly;
