-- Rollback of V0013__verification_attempt_copy
--
-- What: nothing to undo here. The copies live in "VerificationAttempt", whose
--   rollback (V0009) drops them after checking that every row it drops is a
--   copy of a "VerificationLog" row, which stays untouched.
-- Safety: no data touched. Locks: none.

SELECT 'V0013__verification_attempt_copy: nothing to roll back' AS note;
