-- V0043__auditlog_webhook_guard: only record_push writes the webhook's audit rows
--
-- What: auditlog_webhook_guard (BEFORE INSERT on "AuditLog", ALWAYS), function
--   audit_log_webhook_guard(): an AuditLog row with actorId 'github-webhook' or
--   one of the push actions (PUSH_RECORDED, PUSH_DUPLICATE_DELIVERY,
--   PUSH_REJECTED) may be inserted only by the owner of "AuditLog", which is who
--   record_push (SECURITY DEFINER) runs as; anyone else gets 42501, naming the
--   action. Every other audit row is unaffected: the app keeps writing its own.
-- Why: verify_lab_attempt_chain() trusts PUSH_RECORDED rows as anchors of the
--   push ledger (id, chainSeq, rowHash of the rows each push created). Without
--   this guard forgea_app, which may INSERT into AuditLog, could plant anchors
--   for rows that never existed and make an intact ledger look tampered with
--   (found by the attack suite: test_app_cannot_forge_push_anchors).
-- Locks: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on "AuditLog" for an instant
--   (no scan; inserts wait for that instant only).
-- Rollback: drops the trigger and its function. No data involved.

CREATE FUNCTION audit_log_webhook_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (
        NEW."actorId" = 'github-webhook'
        OR NEW."action" IN (
            'PUSH_RECORDED', 'PUSH_DUPLICATE_DELIVERY', 'PUSH_REJECTED'
        )
    ) AND current_user <> (
        SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c
        WHERE c.oid = TG_RELID
    ) THEN
        RAISE EXCEPTION
            'AuditLog: INSERT of % by % refused: webhook audit rows are written only by record_push()',
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
