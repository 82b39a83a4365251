-- Rollback of V0009__verification_attempt_copy
--
-- What: nothing to undo: the copies live in "VerificationAttempt", which
--   V0006's rollback drops after checking that it only holds these copies (or
--   archives it). Locks: none.

SELECT 'V0009__verification_attempt_copy: nothing to roll back' AS note;
