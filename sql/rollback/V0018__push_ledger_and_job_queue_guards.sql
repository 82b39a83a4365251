-- Rollback of V0018__push_ledger_and_job_queue_guards
--
-- What: drops the AuditLog webhook guard, the job state machine and the
--   ledger's append-only and hash-chain triggers, and their functions.
-- Transaction: yes.
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE on "AuditLog",
--   "VerificationJob", "LabAttempt" and "GitHubPushDelivery", an instant.

DROP TRIGGER auditlog_webhook_guard ON "AuditLog";

DROP FUNCTION audit_log_webhook_guard();

DROP TRIGGER verificationjob_no_truncate ON "VerificationJob";

DROP TRIGGER verificationjob_transition_guard ON "VerificationJob";

DROP FUNCTION verification_job_transition_guard();

DROP TRIGGER githubpushdelivery_no_truncate ON "GitHubPushDelivery";

DROP TRIGGER githubpushdelivery_append_only ON "GitHubPushDelivery";

DROP TRIGGER labattempt_no_truncate ON "LabAttempt";

DROP TRIGGER labattempt_append_only ON "LabAttempt";

DROP TRIGGER labattempt_chain_hash ON "LabAttempt";

DROP FUNCTION lab_attempt_chain_hash();

DROP FUNCTION lab_attempt_session_lock(uuid);

DROP FUNCTION lab_attempt_row_hash(public."LabAttempt");
