-- Rollback of V0022__github_repo_mapping_guards
--
-- What: drops the LabSession and GitHubRepoMapping triggers of V0022 and their
--   functions. No data involved.
-- Locks: SHARE ROW EXCLUSIVE on "LabSession" and "GitHubRepoMapping", an instant.

DROP TRIGGER labsession_repo_mapping_autobind ON "LabSession";
DROP TRIGGER labsession_repo_mapping_active ON "LabSession";
DROP TRIGGER githubrepomapping_no_truncate ON "GitHubRepoMapping";
DROP TRIGGER githubrepomapping_append_only ON "GitHubRepoMapping";
DROP TRIGGER githubrepomapping_guard ON "GitHubRepoMapping";

DROP FUNCTION autobind_github_repo_mapping();
DROP FUNCTION sync_github_repo_mapping_active();
DROP FUNCTION guard_github_repo_mapping();
DROP FUNCTION lab_status_is_active(text);
