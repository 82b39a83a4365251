-- Rollback of V0026__lab_attempt_guards
--
-- What: drops the append-only, TRUNCATE and hash-chain triggers of "LabAttempt"
--   and "GitHubPushDelivery" and their functions. No data involved (the chain
--   columns stay; V0025's rollback owns the rows).
-- Locks: SHARE ROW EXCLUSIVE on both tables, an instant.

DROP TRIGGER githubpushdelivery_no_truncate ON "GitHubPushDelivery";
DROP TRIGGER githubpushdelivery_append_only ON "GitHubPushDelivery";
DROP TRIGGER labattempt_no_truncate ON "LabAttempt";
DROP TRIGGER labattempt_append_only ON "LabAttempt";
DROP TRIGGER labattempt_chain_hash ON "LabAttempt";

DROP FUNCTION lab_attempt_chain_hash();
DROP FUNCTION lab_attempt_session_lock(uuid);
DROP FUNCTION lab_attempt_row_hash(public."LabAttempt");
