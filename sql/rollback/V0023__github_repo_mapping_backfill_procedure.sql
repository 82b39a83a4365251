-- Rollback of V0023__github_repo_mapping_backfill_procedure
--
-- What: drops the backfill procedure and list_unmapped_lab_sessions(). The rows
--   the backfill created stay in "GitHubRepoMapping" (V0021's rollback decides
--   their fate). Locks: none on tables.

DROP PROCEDURE backfill_github_repo_mapping(integer, integer);
DROP FUNCTION list_unmapped_lab_sessions();
