-- Rollback of V0020__canonical_repo_url
--
-- What: drops canonical_repo_url(text). No data involved.
-- Locks: none on tables.

DROP FUNCTION canonical_repo_url(text);
