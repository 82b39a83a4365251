-- V0043__auditlog_webhook_guard: only record_push writes the push ledger's audit rows
--
-- What: auditlog_webhook_guard (BEFORE INSERT on "AuditLog", ALWAYS), function
--   audit_log_webhook_guard(): an AuditLog row whose action is one of the
--   push ledger's (PUSH_RECORDED, PUSH_DUPLICATE_DELIVERY, PUSH_REJECTED), by
--   whatever actorId, may be inserted only by the owner of "AuditLog", which
--   is who record_push (SECURITY DEFINER) runs as; anyone else gets 42501,
--   naming the action. Every other audit row is unaffected, including the
--   rows the app's current webhook route writes with actorId
--   'github-webhook' (LAB_VERIFY_ATTEMPT, LAB_STATUS_TRANSITION).
-- Why: verify_lab_attempt_chain() trusts PUSH_RECORDED rows as anchors of the
--   push ledger (id, chainSeq, rowHash of the rows each push created). Without
--   this guard forgea_app, which may INSERT into AuditLog, could plant anchors
--   for rows that never existed and make an intact ledger look tampered with
--   (found by the attack suite: test_app_cannot_forge_push_anchors). The guard
--   keys on the action, not on the actor: refusing every 'github-webhook' row
--   would roll back the running app's webhook transaction (a silent outage:
--   GitHub is answered 200 "Processing failed" and never retries).
-- Locks: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on "AuditLog" for an instant
--   (no scan; inserts wait for that instant only).
-- Rollback: drops the trigger and its function. No data involved.

CREATE FUNCTION audit_log_webhook_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW."action" IN (
        'PUSH_RECORDED', 'PUSH_DUPLICATE_DELIVERY', 'PUSH_REJECTED'
    ) AND current_user <> (
        SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c
        WHERE c.oid = TG_RELID
    ) THEN
        RAISE EXCEPTION
            'AuditLog: INSERT of % by % refused: push ledger audit rows are written only by record_push()',
            quote_literal(left(NEW."action", 60)), current_user
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION audit_log_webhook_guard() FROM PUBLIC;

CREATE TRIGGER auditlog_webhook_guard
BEFORE INSERT ON "AuditLog"
FOR EACH ROW EXECUTE FUNCTION audit_log_webhook_guard();

ALTER TABLE "AuditLog"
ENABLE ALWAYS TRIGGER auditlog_webhook_guard;
