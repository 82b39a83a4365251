-- V0043__verification_job_validate: validate VerificationAttempt -> VerificationJob
--
-- What: VALIDATE CONSTRAINT "VerificationAttempt_verificationJobId_fkey"
--   (added NOT VALID by V0040): one scan of "VerificationAttempt" proves that
--   every existing attempt's job exists (legacy rows have none).
-- Why: `harness verify` requires validated constraints; NOT VALID + VALIDATE in
--   separate transactions keeps writes flowing.
-- Locks: SHARE UPDATE EXCLUSIVE on "VerificationAttempt" (writes continue) and
--   ROW SHARE on "VerificationJob" during the scan.
-- Rollback: nothing to undo (a validated constraint is only stronger; V0040's
--   rollback drops it).

ALTER TABLE "VerificationAttempt"
VALIDATE CONSTRAINT "VerificationAttempt_verificationJobId_fkey";
