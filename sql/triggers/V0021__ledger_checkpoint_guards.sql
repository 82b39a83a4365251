-- V0021__ledger_checkpoint_guards: "LedgerCheckpoint" is append-only
--
-- What: ledgercheckpoint_append_only / _no_truncate: UPDATE, DELETE and
--   TRUNCATE of "LedgerCheckpoint" refused for everyone (FA001), ALWAYS.
-- Why: a recorded checkpoint is evidence; nobody edits it.
-- Transaction: yes.
-- Locks: SHARE ROW EXCLUSIVE on "LedgerCheckpoint" for an instant.
-- Pre-conditions: none.
-- Rollback: drops the triggers. No data involved.

CREATE TRIGGER ledgercheckpoint_append_only
BEFORE UPDATE OR DELETE ON "LedgerCheckpoint"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER ledgercheckpoint_no_truncate
BEFORE TRUNCATE ON "LedgerCheckpoint"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

ALTER TABLE "LedgerCheckpoint"
ENABLE ALWAYS TRIGGER ledgercheckpoint_append_only,
ENABLE ALWAYS TRIGGER ledgercheckpoint_no_truncate;
