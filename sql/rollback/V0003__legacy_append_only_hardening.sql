-- Rollback of V0003__legacy_append_only_hardening
--
-- What: turns the legacy guard triggers back into ordinary (origin) triggers,
--   drops the TRUNCATE triggers and forbid_ledger_mutation(), and restores
--   production's prevent_destructive_action() (body as V0001 creates it; a
--   CREATE OR REPLACE without SET also removes the pinned search_path).
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE per table, an instant.

ALTER TABLE "LabSession"
ENABLE TRIGGER labsession_lifecycle_guard;

ALTER TABLE "ResumeBullet"
ENABLE TRIGGER resumebullet_immutable;

ALTER TABLE "AuditLog"
ENABLE TRIGGER auditlog_immutable,
ENABLE TRIGGER auditlog_no_update,
ENABLE TRIGGER auditlog_no_delete;

ALTER TABLE "VerificationLog"
ENABLE TRIGGER verificationlog_immutable;

DROP TRIGGER resumebullet_no_truncate ON "ResumeBullet";
DROP TRIGGER auditlog_no_truncate ON "AuditLog";
DROP TRIGGER verificationlog_no_truncate ON "VerificationLog";

DROP FUNCTION forbid_ledger_mutation();

CREATE OR REPLACE FUNCTION prevent_destructive_action()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  RAISE EXCEPTION
    'Action forbidden: This table is append-only. Rows cannot be updated or deleted.';
END;
$$;
