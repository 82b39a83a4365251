-- Rollback of V0071__ledger_checkpoint_guards
--
-- What: drops the append-only guards of "LedgerCheckpoint".
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE, an instant.

DROP TRIGGER ledgercheckpoint_no_truncate ON "LedgerCheckpoint";
DROP TRIGGER ledgercheckpoint_append_only ON "LedgerCheckpoint";
