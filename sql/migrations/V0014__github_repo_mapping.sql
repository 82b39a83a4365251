-- V0014__github_repo_mapping: canonical_repo_url(), "GitHubRepoMapping" and its backfill procedure
-- harness: precondition shared_active_fork_url
--
-- What:
--   canonical_repo_url(url text) RETURNS text, IMMUTABLE, NULL for NULL or
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
--
--   table "GitHubRepoMapping", one row per LabSession (UNIQUE sessionId):
--     id uuid, sessionId (FK LabSession), provider ('github'), providerRepoId
--     bigint (GitHub's immutable repository id; NULL for rows backfilled from
--     URLs until the first push carrying it fills it in, once), repoFullName
--     ('owner/name', lowercase), repoUrl (canonical_repo_url() output),
--     defaultBranch (nullable), sessionActive (denormalised: true while the
--     session's status is IN_PROGRESS, STUCK or DEFERRED; maintained by the
--     triggers of V0015, never by callers), idempotencyKey / requestDigest
--     (create_lab_session's idempotency record; NULL for backfilled rows),
--     createdAt.
--   Partial unique indexes give "at most one active session per providerRepoId
--   and per repoUrl" under any concurrency:
--     "GitHubRepoMapping_providerRepoId_active_key" (providerRepoId) WHERE sessionActive
--     "GitHubRepoMapping_repoUrl_active_key"        (repoUrl)        WHERE sessionActive
--   Pre-flight (FM001, nothing changed): refuses when two ACTIVE sessions already
--   share one canonical fork URL; DETAIL lists the URLs and session ids (first
--   20). Resolve those sessions (move one to a terminal state) and re-run.
--   After a preserving rollback, the archived bindings
--   (forgea_archive."GitHubRepoMapping_V0014_<time>") come back first, exactly
--   (ids, providerRepoId, idempotency keys, createdAt); V0016 then backfills
--   only sessions without one. A binding whose session was deleted, or whose
--   archived sessionActive no longer matches its session's status (the session
--   moved while rolled back), refuses (FM003, naming the sessions; nothing
--   changed).
--
--   procedure backfill_github_repo_mapping(p_batch_size, p_report_limit),
--   CALLed by V0016 (no-transaction) and safe to CALL again at any time: it walks
--   "LabSession" in id order, p_batch_size sessions per transaction (COMMIT after
--   each batch, RAISE NOTICE progress), and inserts a "GitHubRepoMapping" row for
--   each session without one whose userForkUrl canonical_repo_url() can parse.
--   Nothing is overwritten (ON CONFLICT DO NOTHING): sessions already mapped
--   (earlier run, create_lab_session, the autobind trigger) are skipped, and a
--   repository already bound to another active session is left unmapped rather
--   than stolen. At the end it REPORTS every session left unmapped: one NOTICE
--   line per session (id, status, URL, reason; first p_report_limit) and a total.
--   Function list_unmapped_lab_sessions() returns the same list at any time (for
--   the harness and DBAs). Unmapped sessions keep their userForkUrl untouched;
--   nothing is dropped.
--   Note: a procedure that COMMITs cannot carry a SET search_path clause, so this
--   one schema-qualifies every table and function it uses instead; it is not
--   SECURITY DEFINER and EXECUTE is revoked from PUBLIC (owner only).
--
--   lab_status_is_active(status text) RETURNS boolean, IMMUTABLE: the one
--   definition of an active session (IN_PROGRESS, STUCK, DEFERRED; NULL for
--   NULL) that the partial unique indexes, the mapping guards (V0015) and the
--   API share.
-- Why: CONTRACT sections 4 and 5 (GitHub repository binding).
-- Transaction: yes.
-- Locks: the pre-flight reads "LabSession" (ACCESS SHARE); the table, its
--   indexes and its foreign key are new (SHARE ROW EXCLUSIVE on "LabSession"
--   for an instant for the foreign key). At 1M sessions: 16-21 s, almost all
--   the pre-flight's read of every active session's fork URL; no app wait.
-- Pre-conditions: no two active sessions share a canonical fork URL.
-- Rollback: refuses (FM002) when a mapping holds what the sessions cannot
--   rebuild (a providerRepoId, an idempotency key, a row of a session created
--   through create_lab_session) unless forgea.rollback_preserve is on, which
--   archives every row first; drops the table, the procedure and the
--   functions.

CREATE FUNCTION canonical_repo_url(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rest text COLLATE "C";
    v_owner text COLLATE "C";
    v_name text COLLATE "C";
BEGIN
    -- Locale-proof: anything but printable ASCII (code points 0x21-0x7E: no
    -- spaces, controls or non-ASCII characters) is refused by a bracket range
    -- under COLLATE "C" (ranges are code points), and the letters are folded
    -- by lower() under COLLATE "C", which folds A-Z only. Neither the
    -- caller's nor the database's collation decides anything. (translate()
    -- over the 94 allowed characters did the same at three times the cost:
    -- at 100k sessions 3.0 s against 0.9 s; the chain calls it for every
    -- session in V0014's check, the backfill and its CHECK.)
    IF url IS NULL OR length(url) > 500 OR url COLLATE "C" !~ '^[!-~]*$' THEN
        RETURN NULL;
    END IF;
    v_rest := lower(url COLLATE "C");
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

COMMENT ON FUNCTION canonical_repo_url(text) IS
'Canonical https://github.com/owner/name form of a GitHub repository URL, or NULL when unparseable (V0014).';

REVOKE ALL ON FUNCTION canonical_repo_url(text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION canonical_repo_url(text)
TO forgea_app, forgea_worker, forgea_readonly;

CREATE FUNCTION lab_status_is_active(p_status text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT p_status IN ('IN_PROGRESS', 'STUCK', 'DEFERRED') $$;

REVOKE ALL ON FUNCTION lab_status_is_active(text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION lab_status_is_active(text)
TO forgea_app, forgea_worker, forgea_readonly;

DO $$
DECLARE
    v_dups text;
BEGIN
    SELECT string_agg(format('%s: %s', d.url, d.ids), '; ')
    INTO v_dups
    FROM (
        SELECT
            a.url,
            string_agg(a."id"::text, ', ' ORDER BY a."id") AS ids
        FROM (
            SELECT s."id", canonical_repo_url(s."userForkUrl") AS url
            FROM public."LabSession" AS s
            WHERE s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED')
        ) AS a
        WHERE a.url IS NOT NULL
        GROUP BY a.url
        HAVING count(*) > 1
        ORDER BY a.url
        LIMIT 20
    ) AS d;
    IF v_dups IS NOT NULL THEN
        RAISE EXCEPTION
            'V0014__github_repo_mapping pre-flight failed: active LabSessions share a canonical fork URL'
            USING ERRCODE = 'FM001',
            DETAIL = 'canonical URL: session ids (first 20 URLs): ' || v_dups,
            HINT = 'List them all: psql -f sql/preflight/shared_active_fork_url.sql. '
            || 'Keep one active session per repository; DEFERRED is active and does '
            || 'not help. While the app runs a Prisma client without FAILED: '
            || 'VERIFIED_PASS only through verification, otherwise the application '
            || 'owners decide; once the regenerated client runs: FAILED. Then re-run. '
            || 'Nothing was changed.';
    END IF;
END;
$$;

CREATE TABLE "GitHubRepoMapping" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "sessionId" UUID NOT NULL,
    "provider" TEXT NOT NULL DEFAULT 'github',
    "providerRepoId" BIGINT,
    "repoFullName" TEXT NOT NULL,
    "repoUrl" TEXT NOT NULL,
    "defaultBranch" TEXT,
    "sessionActive" BOOLEAN NOT NULL DEFAULT TRUE,
    "idempotencyKey" TEXT,
    "requestDigest" BYTEA,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    CONSTRAINT "GitHubRepoMapping_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "GitHubRepoMapping_provider_check"
    CHECK ("provider" = 'github'),
    CONSTRAINT "GitHubRepoMapping_providerRepoId_check"
    CHECK ("providerRepoId" > 0),
    CONSTRAINT "GitHubRepoMapping_repoUrl_check"
    CHECK ("repoUrl" = canonical_repo_url("repoUrl")),
    CONSTRAINT "GitHubRepoMapping_repoFullName_check"
    CHECK ('https://github.com/' || "repoFullName" = "repoUrl"),
    CONSTRAINT "GitHubRepoMapping_defaultBranch_check"
    CHECK (octet_length("defaultBranch") BETWEEN 1 AND 255),
    CONSTRAINT "GitHubRepoMapping_idempotencyKey_check"
    CHECK (
        ("idempotencyKey" IS NULL) = ("requestDigest" IS NULL)
        AND length("idempotencyKey") BETWEEN 1 AND 200
    )
);

CREATE UNIQUE INDEX "GitHubRepoMapping_sessionId_key"
ON "GitHubRepoMapping" ("sessionId");

CREATE UNIQUE INDEX "GitHubRepoMapping_idempotencyKey_key"
ON "GitHubRepoMapping" ("idempotencyKey");

CREATE UNIQUE INDEX "GitHubRepoMapping_providerRepoId_active_key"
ON "GitHubRepoMapping" ("providerRepoId")
WHERE "sessionActive";

CREATE UNIQUE INDEX "GitHubRepoMapping_repoUrl_active_key"
ON "GitHubRepoMapping" ("repoUrl")
WHERE "sessionActive";

CREATE INDEX "GitHubRepoMapping_providerRepoId_idx"
ON "GitHubRepoMapping" ("providerRepoId");

CREATE INDEX "GitHubRepoMapping_repoUrl_idx"
ON "GitHubRepoMapping" ("repoUrl");

ALTER TABLE "GitHubRepoMapping" ADD CONSTRAINT "GitHubRepoMapping_sessionId_fkey"
FOREIGN KEY ("sessionId") REFERENCES "LabSession" ("id")
ON DELETE RESTRICT ON UPDATE RESTRICT;

SELECT forgea_archive_restore('"GitHubRepoMapping"', 'V0014');

DO $$
DECLARE
    v_ids text;
BEGIN
    SELECT string_agg(x."sessionId"::text, ', ') INTO v_ids
    FROM (
        SELECT m."sessionId"
        FROM public."GitHubRepoMapping" AS m
        INNER JOIN public."LabSession" AS s ON m."sessionId" = s."id"
        WHERE m."sessionActive"
        <> (s."status"::text IN ('IN_PROGRESS', 'STUCK', 'DEFERRED'))
        ORDER BY m."sessionId"
        LIMIT 20
    ) AS x;
    IF v_ids IS NOT NULL THEN
        RAISE EXCEPTION
            'apply of V0014 refused: archived GitHubRepoMapping rows contradict their sessions'' status'
            USING ERRCODE = 'FM003',
            DETAIL = 'sessionActive differs from the session''s status; sessionIds (first 20): '
            || v_ids,
            HINT = 'The sessions changed status while rolled back. Nothing of this '
            || 'file was applied and the archive is unchanged.';
    END IF;
END;
$$;

COMMENT ON TABLE "GitHubRepoMapping" IS
'Repository -> LabSession binding (V0014). Written only by create_lab_session, record_push and the LabSession triggers of V0015.';

REVOKE ALL ON "GitHubRepoMapping" FROM PUBLIC;

GRANT SELECT ON "GitHubRepoMapping"
TO forgea_app, forgea_worker, forgea_readonly;

CREATE FUNCTION list_unmapped_lab_sessions()
RETURNS TABLE (
    session_id uuid, status text, user_fork_url text, reason text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT
        s."id",
        pg_catalog.format('%s', s."status"),
        s."userForkUrl",
        CASE
            WHEN canonical_repo_url(s."userForkUrl") IS NULL
                THEN 'unparseable fork URL'
            WHEN lab_status_is_active(pg_catalog.format('%s', s."status"))
                AND EXISTS (
                    SELECT 1 FROM public."GitHubRepoMapping" AS o
                    WHERE o."repoUrl" = canonical_repo_url(s."userForkUrl")
                    AND o."sessionActive"
                )
                THEN 'repository bound to another active session'
            ELSE 'not yet backfilled'
        END
    FROM public."LabSession" AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM public."GitHubRepoMapping" AS m
        WHERE m."sessionId" = s."id"
    )
    ORDER BY s."id"
$$;

REVOKE ALL ON FUNCTION list_unmapped_lab_sessions() FROM PUBLIC;

GRANT EXECUTE ON FUNCTION list_unmapped_lab_sessions()
TO forgea_app, forgea_readonly;

CREATE PROCEDURE backfill_github_repo_mapping(
    p_batch_size integer DEFAULT 5000,
    p_report_limit integer DEFAULT 100
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_last uuid := '00000000-0000-0000-0000-000000000000';
    v_next uuid;
    v_seen bigint;
    v_ins bigint;
    v_total_seen bigint := 0;
    v_total_ins bigint := 0;
    v_unmapped bigint := 0;
    r record;
BEGIN
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION
            'backfill_github_repo_mapping: p_batch_size must be >= 1, got %',
            p_batch_size
            USING ERRCODE = '22023';
    END IF;
    LOOP
        WITH batch AS (
            SELECT s."id", public.canonical_repo_url(s."userForkUrl") AS url
            FROM public."LabSession" AS s
            WHERE s."id" > v_last
            ORDER BY s."id"
            LIMIT p_batch_size
        ),

        ins AS (
            INSERT INTO public."GitHubRepoMapping" (
                "sessionId", "repoFullName", "repoUrl"
            )
            SELECT b."id", pg_catalog.substr(b.url, 20), b.url
            FROM batch AS b
            WHERE
                b.url IS NOT NULL
                -- Mapped already: skipped. A scalar subquery, not NOT EXISTS,
                -- so that it stays one index probe per session (an anti-join
                -- may scan the whole growing table once per batch).
                AND (
                    SELECT m."id" FROM public."GitHubRepoMapping" AS m
                    WHERE m."sessionId" = b."id"
                ) IS NULL
            ORDER BY b."id"
            ON CONFLICT DO NOTHING
            RETURNING 1
        )

        SELECT
            (SELECT b."id" FROM batch AS b ORDER BY b."id" DESC LIMIT 1),
            (SELECT pg_catalog.count(*) FROM batch),
            (SELECT pg_catalog.count(*) FROM ins)
        INTO v_next, v_seen, v_ins;
        EXIT WHEN v_seen = 0;
        v_last := v_next;
        v_total_seen := v_total_seen + v_seen;
        v_total_ins := v_total_ins + v_ins;
        COMMIT;
        RAISE NOTICE
            'backfill_github_repo_mapping: % sessions scanned, % mappings created (last id %)',
            v_total_seen, v_total_ins, v_last;
    END LOOP;
    COMMIT;

    FOR r IN SELECT * FROM public.list_unmapped_lab_sessions() LOOP
        v_unmapped := v_unmapped + 1;
        IF v_unmapped <= p_report_limit THEN
            RAISE NOTICE 'unmapped LabSession % (%): % [%]',
                r.session_id, r.status, pg_catalog.left(r.user_fork_url, 200),
                r.reason;
        END IF;
    END LOOP;
    RAISE NOTICE
        'backfill_github_repo_mapping done: % sessions scanned, % mappings created, % sessions left unmapped%',
        v_total_seen, v_total_ins, v_unmapped,
        CASE WHEN v_unmapped > p_report_limit
            THEN format(' (first %s listed; SELECT * FROM list_unmapped_lab_sessions() for all)', p_report_limit)
            ELSE ''
        END;
END;
$$;

REVOKE ALL ON PROCEDURE backfill_github_repo_mapping(integer, integer)
FROM PUBLIC;
