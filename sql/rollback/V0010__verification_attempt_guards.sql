-- Rollback of V0010__verification_attempt_guards
--
-- What: drops the VerificationAttempt guards and the VerificationLog freeze.
--   No data involved.
-- Locks: SHARE ROW EXCLUSIVE on "VerificationAttempt", an instant.

DROP TRIGGER verificationattempt_insert_guard ON "VerificationAttempt";
DROP TRIGGER verificationattempt_no_truncate ON "VerificationAttempt";
DROP TRIGGER verificationattempt_append_only ON "VerificationAttempt";
DROP FUNCTION verification_attempt_insert_guard();
DROP TRIGGER verificationlog_frozen ON "VerificationLog";
DROP FUNCTION verification_log_frozen();
