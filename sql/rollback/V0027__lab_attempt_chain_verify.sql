-- Rollback of V0027__lab_attempt_chain_verify
--
-- What: drops verify_lab_attempt_chain(uuid). No data involved. Locks: none.

DROP FUNCTION verify_lab_attempt_chain(uuid);
