-- V0003__legacy_append_only_hardening: TRUNCATE guards and ALWAYS triggers
--
-- What: adds forbid_ledger_mutation(), the pack's one append-only guard
--   (SQLSTATE FA001, message names the table, the operation and the row id),
--   attaches it as a BEFORE TRUNCATE statement trigger to the legacy append-only
--   tables VerificationLog, AuditLog and ResumeBullet, and switches every legacy
--   guard trigger to ENABLE ALWAYS so that it also fires when a session runs
--   with session_replication_role = replica (which otherwise silences ordinary
--   triggers: pg_dump restores, logical replication appliers, or a superuser
--   trying to slip an edit past the guards).
--   Replaces the body of production's prevent_destructive_action() with one
--   that keeps its SQLSTATE (P0001, which the running app may already match
--   on) but names the table, the operation and the row, as every refusal of
--   the pack does; production's message named none of them.
-- Why: CONTRACT section 4 (existing append-only tables) and section 7.
--   Production guards covered UPDATE and DELETE only; TRUNCATE bypassed them
--   entirely.
-- Transaction: yes.
-- Locks: CREATE TRIGGER / ALTER TABLE ... ENABLE ALWAYS TRIGGER take SHARE ROW
--   EXCLUSIVE on each table for an instant (blocks writes, not reads; no scan).
-- Pre-conditions: none.
-- Rollback: drops the TRUNCATE triggers and the function, turns the legacy
--   triggers back into ordinary (origin) triggers and restores production's
--   prevent_destructive_action() byte for byte. No data involved.

CREATE FUNCTION forbid_ledger_mutation()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        RAISE EXCEPTION '% is append-only: % of row % refused',
            TG_TABLE_NAME, TG_OP, OLD."id"
            USING ERRCODE = 'FA001';
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FA001';
END;
$$;

REVOKE ALL ON FUNCTION forbid_ledger_mutation() FROM PUBLIC;

CREATE OR REPLACE FUNCTION prevent_destructive_action()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % of row % refused',
        TG_TABLE_NAME, TG_OP, OLD."id"
        USING ERRCODE = 'P0001';
END;
$$;

CREATE TRIGGER verificationlog_no_truncate
BEFORE TRUNCATE ON "VerificationLog"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER auditlog_no_truncate
BEFORE TRUNCATE ON "AuditLog"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER resumebullet_no_truncate
BEFORE TRUNCATE ON "ResumeBullet"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

ALTER TABLE "VerificationLog"
ENABLE ALWAYS TRIGGER verificationlog_immutable,
ENABLE ALWAYS TRIGGER verificationlog_no_truncate;

ALTER TABLE "AuditLog"
ENABLE ALWAYS TRIGGER auditlog_immutable,
ENABLE ALWAYS TRIGGER auditlog_no_update,
ENABLE ALWAYS TRIGGER auditlog_no_delete,
ENABLE ALWAYS TRIGGER auditlog_no_truncate;

ALTER TABLE "ResumeBullet"
ENABLE ALWAYS TRIGGER resumebullet_immutable,
ENABLE ALWAYS TRIGGER resumebullet_no_truncate;

ALTER TABLE "LabSession"
ENABLE ALWAYS TRIGGER labsession_lifecycle_guard;
