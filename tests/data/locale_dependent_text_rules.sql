-- The locale-dependent canonical_repo_url() and git_branch_name_valid() of the
-- pre-release chain (its V0020 and V0030; history in git), kept as test data:
-- tests/attacks/test_hostile_input.py runs them beside the release chain's to
-- prove that its corpus reaches the answers that depended on the locale.

CREATE FUNCTION canonical_repo_url(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rest text;
    v_owner text;
    v_name text;
BEGIN
    IF url IS NULL OR length(url) > 500 OR url ~ '[[:space:][:cntrl:]]' THEN
        RETURN NULL;
    END IF;
    -- Prefix comparisons and split_part, not one regex with a lazy group:
    -- the same answers, measured 4.5x faster (the bulk backfills call this
    -- once or twice per session).
    v_rest := lower(url);
    v_rest := CASE
        WHEN starts_with(v_rest, 'https://github.com/') THEN substr(v_rest, 20)
        WHEN starts_with(v_rest, 'http://github.com/') THEN substr(v_rest, 19)
        WHEN starts_with(v_rest, 'https://www.github.com/') THEN substr(v_rest, 24)
        WHEN starts_with(v_rest, 'http://www.github.com/') THEN substr(v_rest, 23)
        WHEN starts_with(v_rest, 'ssh://git@github.com/') THEN substr(v_rest, 22)
        WHEN starts_with(v_rest, 'git@github.com:') THEN substr(v_rest, 16)
    END;
    -- What is left must be owner/name, then optionally ".git" and slashes.
    v_rest := rtrim(v_rest, '/');
    IF v_rest IS NULL OR v_rest !~ '^[^/]+/[^/]+$' THEN
        RETURN NULL;
    END IF;
    v_owner := split_part(v_rest, '/', 1);
    v_name := split_part(v_rest, '/', 2);
    IF length(v_name) > 4 AND right(v_name, 4) = '.git' THEN
        v_name := left(v_name, -4);
    END IF;
    IF v_owner !~ '^[a-z0-9]([a-z0-9-]{0,37}[a-z0-9])?$'
        OR v_name !~ '^[a-z0-9._-]{1,100}$'
        OR v_name IN ('.', '..') THEN
        RETURN NULL;
    END IF;
    RETURN 'https://github.com/' || v_owner || '/' || v_name;
END;
$$;

CREATE FUNCTION git_branch_name_valid(p_branch text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        octet_length(p_branch) BETWEEN 1 AND 255
        AND p_branch !~ '[[:cntrl:][:space:]~^:?*\[\\\x7f]'
        AND p_branch !~ '\.\.|@\{|//|^/|/$|(^|/)\.|\.lock(/|$)|\.$'
        AND p_branch <> '@',
        false
    )
$$;
