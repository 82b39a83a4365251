-- Rollback of V0030__record_push
--
-- What: drops record_push and git_branch_name_valid. No data involved (ledger
--   rows belong to V0025). Locks: none on tables.

DROP FUNCTION record_push(text, bigint, text, text, text, timestamptz, jsonb);
DROP FUNCTION git_branch_name_valid(text);
