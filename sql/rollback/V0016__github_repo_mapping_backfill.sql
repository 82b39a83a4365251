-- Rollback of V0016__github_repo_mapping_backfill
--
-- What: nothing to undo. The backfilled rows live in "GitHubRepoMapping";
--   rolling back V0014 refuses (FM002) or archives them. Locks: none.

SELECT 'V0016__github_repo_mapping_backfill: nothing to roll back' AS note;
