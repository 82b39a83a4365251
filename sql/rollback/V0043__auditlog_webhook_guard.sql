-- Rollback of V0043__auditlog_webhook_guard
--
-- What: drops the trigger and its function. No data involved.
-- Locks: SHARE ROW EXCLUSIVE on "AuditLog", an instant.

DROP TRIGGER auditlog_webhook_guard ON "AuditLog";
DROP FUNCTION audit_log_webhook_guard();
