-- V0023__github_repo_mapping_backfill_procedure: the resumable mapping backfill
--
-- What: procedure backfill_github_repo_mapping(p_batch_size, p_report_limit),
--   CALLed by V0024 (no-transaction) and safe to CALL again at any time: it walks
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
-- Why: CONTRACT section 4 ("URLs that cannot be parsed are reported, never
--   dropped silently"); LabSession has about 1M rows in production, so no single
--   long transaction.
-- Locks: each batch holds FOR SHARE row locks on its (<= p_batch_size) sessions
--   until its COMMIT (taken by the mapping guard; a concurrent status change of
--   one of those sessions waits for that batch only). No table-level lock beyond
--   ROW EXCLUSIVE on the new table.
-- Rollback: drops the procedure and the function. Data stays (V0021's rollback
--   owns the rows).

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
        s."status"::text,
        s."userForkUrl",
        CASE
            WHEN canonical_repo_url(s."userForkUrl") IS NULL
                THEN 'unparseable fork URL'
            WHEN lab_status_is_active(s."status"::text)
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
