-- V0071__ledger_checkpoint_guards: "LedgerCheckpoint" is append-only
--
-- What: ledgercheckpoint_append_only (BEFORE UPDATE OR DELETE, row) and
--   ledgercheckpoint_no_truncate (BEFORE TRUNCATE, statement) ->
--   forbid_ledger_mutation() (FA001), for every role including the owner,
--   ENABLE ALWAYS (they fire under session_replication_role = replica too).
-- Why: a checkpoint record, once written, is history, like the ledger it
--   commits to.
-- Locks: CREATE TRIGGER: SHARE ROW EXCLUSIVE on the new table, an instant.
-- Rollback: drops the two triggers. No data involved.

CREATE TRIGGER ledgercheckpoint_append_only
BEFORE UPDATE OR DELETE ON "LedgerCheckpoint"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER ledgercheckpoint_no_truncate
BEFORE TRUNCATE ON "LedgerCheckpoint"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

ALTER TABLE "LedgerCheckpoint"
ENABLE ALWAYS TRIGGER ledgercheckpoint_append_only,
ENABLE ALWAYS TRIGGER ledgercheckpoint_no_truncate;
