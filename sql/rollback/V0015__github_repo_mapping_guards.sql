-- Rollback of V0015__github_repo_mapping_guards
--
-- What: drops the mapping guards and the LabSession triggers that keep the
--   mappings in step, and their functions.
-- Transaction: yes.
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE on "GitHubRepoMapping"
--   and "LabSession", an instant.

DROP TRIGGER labsession_repo_mapping_autobind ON "LabSession";

DROP TRIGGER labsession_repo_mapping_active ON "LabSession";

DROP TRIGGER githubrepomapping_no_truncate ON "GitHubRepoMapping";

DROP TRIGGER githubrepomapping_append_only ON "GitHubRepoMapping";

DROP TRIGGER githubrepomapping_guard ON "GitHubRepoMapping";

DROP FUNCTION autobind_github_repo_mapping();

DROP FUNCTION sync_github_repo_mapping_active();

DROP FUNCTION guard_github_repo_mapping();
