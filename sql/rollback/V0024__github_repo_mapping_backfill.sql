-- Rollback of V0024__github_repo_mapping_backfill
--
-- What: nothing to undo. The backfilled rows live in "GitHubRepoMapping", which
--   the previous version (V0023) still has; rolling back V0021 refuses (FM002) or
--   archives them. Locks: none.

SELECT 'V0024__github_repo_mapping_backfill: nothing to roll back' AS note;
