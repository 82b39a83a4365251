-- V0020__canonical_repo_url: the one canonical form of a GitHub repository URL
--
-- What: canonical_repo_url(url text) RETURNS text, IMMUTABLE, NULL for NULL or
--   anything it cannot parse. Accepted forms (case-insensitive):
--     https://github.com/owner/name      http://github.com/owner/name
--     https://www.github.com/owner/name  ssh://git@github.com/owner/name
--     git@github.com:owner/name
--   each optionally followed by ".git" and/or trailing slashes. Result:
--   'https://github.com/' || lower(owner) || '/' || lower(name), no ".git", no
--   trailing slash. Refused (NULL): any other host (github.com.evil.com,
--   gist.github.com, ports), credentials (user:pw@), query strings and
--   fragments, extra path segments (/tree/main, /pulls), percent-encoding,
--   whitespace or control characters anywhere (no trimming), owners that are not
--   1-39 characters of [a-z0-9-] without a leading/trailing hyphen, names that
--   are not 1-100 characters of [a-z0-9._-] or are "." / "..", input over 500
--   characters.
-- Why: CONTRACT sections 4 and 5. The webhook used to bind pushes by exact string
--   comparison with LabSession.userForkUrl; one canonical form makes the binding
--   deterministic (GitHubRepoMapping.repoUrl is always this function's output).
-- Locks: none (new function only).
-- Rollback: drops the function (nothing may depend on it by then).

CREATE FUNCTION canonical_repo_url(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m text[];
    v_owner text;
    v_name text;
BEGIN
    IF url IS NULL OR length(url) > 500 OR url ~ '[[:space:][:cntrl:]]' THEN
        RETURN NULL;
    END IF;
    m := regexp_match(
        lower(url),
        '^(?:https?://(?:www\.)?github\.com/|ssh://git@github\.com/|git@github\.com:)'
        || '([^/]+)/([^/]+?)(?:\.git)?/*$'
    );
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    v_owner := m[1];
    v_name := m[2];
    IF v_owner !~ '^[a-z0-9]([a-z0-9-]{0,37}[a-z0-9])?$'
        OR v_name !~ '^[a-z0-9._-]{1,100}$'
        OR v_name IN ('.', '..') THEN
        RETURN NULL;
    END IF;
    RETURN 'https://github.com/' || v_owner || '/' || v_name;
END;
$$;

COMMENT ON FUNCTION canonical_repo_url(text) IS
'Canonical https://github.com/owner/name form of a GitHub repository URL, or NULL when unparseable (V0020).';

REVOKE ALL ON FUNCTION canonical_repo_url(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION canonical_repo_url(text)
TO forgea_app, forgea_worker, forgea_readonly;
