-- V0055__locale_independent_text_rules: URL and branch rules the same under every locale
--
-- What:
--   canonical_repo_url(url): the same accepted forms and the same answers as
--     V0020 gives in a database with the C locale, now under every locale and
--     collation: only printable ASCII (0x21-0x7E) is accepted, checked with
--     translate() against the list of those characters, letters are folded by
--     translate() (A-Z -> a-z), and every comparison and regular expression
--     runs on variables declared COLLATE "C" (ranges such as [a-z] by code
--     point, no locale character classes). Before, lower() and
--     [[:space:][:cntrl:]] followed the database's ctype (or the argument's
--     collation): a Kelvin sign U+212A became "k" under C.UTF-8 or ICU and was
--     refused under C; "I" becomes a dotless i under a Turkish locale.
--   git_branch_name_valid(p_branch): its character classes run under COLLATE
--     "C" (ASCII controls and spaces), and the non-ASCII controls and spaces
--     that a UTF-8 locale would count (U+0080-U+009F, no-break and other
--     Unicode spaces, U+FEFF) are refused by code point, so a branch is valid or
--     not whatever the locale.
-- Why: the function is IMMUTABLE and binds pushes to sessions: two databases,
--   or one database before and after a collation change, must bind a push the
--   same way. Stored canonical URLs are printable ASCII, so the
--   "GitHubRepoMapping_repoUrl_check" (repoUrl = canonical_repo_url(repoUrl))
--   holds for every existing row; `harness verify` (session_identity) reports a
--   session whose userForkUrl an earlier, locale-dependent answer bound.
-- Locks: none (function bodies only).
-- Rollback: restores V0020's canonical_repo_url and V0030's
--   git_branch_name_valid (bodies byte for byte).

CREATE OR REPLACE FUNCTION canonical_repo_url(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- every character the canonical form may come from: printable ASCII
    -- (0x21-0x7E), listed by code point so that no locale decides
    c_allowed constant text COLLATE "C" :=
        '!"#$%&''()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\]^_`abcdefghijklmnopqrstuvwxyz{|}~';
    v_rest text COLLATE "C";
    v_owner text COLLATE "C";
    v_name text COLLATE "C";
BEGIN
    -- No lower(), no character class, no comparison under the caller's or the
    -- database's collation: anything but printable ASCII (spaces, controls,
    -- every non-ASCII character) is refused, and ASCII letters are folded by
    -- translate(), so the answer is the same under every locale.
    IF url IS NULL OR length(url) > 500
        OR octet_length(translate(url, c_allowed, '')) > 0 THEN
        RETURN NULL;
    END IF;
    v_rest := translate(url, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz');
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

CREATE OR REPLACE FUNCTION git_branch_name_valid(p_branch text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        octet_length(p_branch) BETWEEN 1 AND 255
        AND p_branch COLLATE "C" !~ '[[:cntrl:][:space:]~^:?*\[\\\x7f]'
        AND p_branch COLLATE "C" !~ '[\x80-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]'
        AND p_branch COLLATE "C" !~ '\.\.|@\{|//|^/|/$|(^|/)\.|\.lock(/|$)|\.$'
        AND p_branch COLLATE "C" <> '@',
        false
    )
$$;
