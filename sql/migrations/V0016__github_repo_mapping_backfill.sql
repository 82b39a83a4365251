-- V0016__github_repo_mapping_backfill: run the mapping backfill in batches
-- harness: no-transaction
-- harness: precondition unparseable_fork_url
--
-- What: CALL backfill_github_repo_mapping(500, 100): one GitHubRepoMapping row
--   per existing LabSession whose userForkUrl parses, in batches of 500 sessions
--   committed one by one; unparseable or conflicting URLs are listed in NOTICE
--   lines (first 100) with a total, and remain queryable through
--   list_unmapped_lab_sessions().
-- Why: CONTRACT section 4 (backfill from LabSession.userForkUrl). It must run
--   outside a transaction block because the procedure COMMITs per batch.
-- Transaction: no (commits per batch; resumable: mapped sessions are skipped).
-- Locks: per batch, FOR SHARE row locks on at most 500 sessions until that
--   batch commits; no table lock that blocks the app. At 1M sessions:
--   107-141 s in all (2000 batches; docs/bench-results.md, runs A-D).
-- Pre-conditions: none (unparseable URLs are reported, not refused).
-- Rollback: nothing to undo here (the rows belong to V0014, whose rollback
--   refuses or archives them).

CALL backfill_github_repo_mapping(500, 100);
