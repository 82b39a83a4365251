-- Rollback of V0021__ledger_checkpoint_guards
--
-- What: drops the append-only triggers of "LedgerCheckpoint".
-- Transaction: yes.
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE, an instant.

DROP TRIGGER ledgercheckpoint_no_truncate ON "LedgerCheckpoint";

DROP TRIGGER ledgercheckpoint_append_only ON "LedgerCheckpoint";
