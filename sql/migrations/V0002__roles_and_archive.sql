-- V0002__roles_and_archive: the group roles, the baseline's grants, the rollback archive
--
-- What:
--   creates the NOLOGIN group roles forgea_app (web app and webhook),
--   forgea_worker (verification workers) and forgea_readonly (reporting) when
--   they are missing, and grants them what the baseline tables need.
--   forgea_readonly gets column-level SELECT that leaves out every secret: the
--   OAuth tokens of "Account" (refresh_token, access_token, id_token), the
--   session tokens of "Session" and "AuthSession", and "VerificationToken".
--   EXECUTE on the baseline trigger functions is revoked from PUBLIC (trigger
--   functions never need it; triggers fire regardless).
--
--   creates schema forgea_archive (owner-only) and the function
--   forgea_archive_copy(table, tag), which copies every row of a table into a new
--   table forgea_archive."<Table>_<tag>_<UTC timestamp>" and returns its name.
--   Each row is kept whole as one jsonb value (column "row"), so the archive
--   depends on no type or table of the pack and survives every later rollback;
--   jsonb_populate_record() turns a row back into the table's type.
--   Rollback files call it when the DBA asked for preservation
--   (SET forgea.rollback_preserve = on; harness rollback --preserve) instead of
--   refusing with FM002.
--   And forgea_rollback_preserving(rollback, reason, detail), the one decision
--   every such rollback makes: without preservation it raises FM002 with the
--   reason and the offending rows (DETAIL) and a HINT; with it, it returns true
--   and the caller archives before dropping.
--   forgea_archive_if_preserving(table, tag): with preservation on, archives the
--   table (every row, rebuildable or not) and returns the archive's name; else
--   NULL. Every data-dropping rollback calls it, so that a preserving rollback
--   keeps every row with its id, values and timestamps, not only the rows the
--   old schema cannot rebuild.
--   The way back: forgea_archive_restore(table, tag) puts the rows of the
--   unrestored archive "<Table>_<tag>_*" back into the table the forward file
--   <tag> has just created (jsonb_populate_record, same ids, values, timestamps
--   and hashes), and forgea_archive_restore_columns(table, source, tag, columns)
--   puts archived column values back by "id" into existing rows. Both mark the
--   archive restored in its table comment (both through
--   forgea_archive_put_back) ("restored by ... at ..."; the
--   archive is never dropped) and raise FM003 (nothing of the calling file
--   changes) when a row cannot be restored exactly: its parent row is gone, a
--   row with its key now exists, or its session was deleted; DETAIL names the
--   rows. The comment is the registry: "archived by the rollback of <tag> ...;
--   not restored" until a forward file restores it.
--   Timeouts, per database (ALTER ROLE ... IN DATABASE <this database>, so
--   they stay with this database and leave the roles' use elsewhere alone):
--   forgea_app, forgea_worker, forgea_readonly get lock_timeout 5s,
--   idle_in_transaction_session_timeout 60s and statement_timeout 30s / 60s /
--   5min. PostgreSQL applies role settings to the role that logs in, not to
--   its members: the DBA sets the same on each LOGIN role (docs/security.md,
--   "Nobody stalls the others"). Without the right to alter a role (it
--   existed before and the migrating role has no ADMIN OPTION on it) a
--   WARNING names the statements instead. "Lab": UPDATE on the columns the
--   app edits only, so the app cannot LOCK it above ROW EXCLUSIVE.
-- Why: CONTRACT section 6 (roles, no secrets for readonly); the rollback rules
--   (docs/architecture.md): a rollback never silently drops rows, and
--   rollback --preserve followed by apply is the identity on data. Works for a
--   migrating role that is not a superuser but has CREATEROLE.
-- Transaction: yes.
-- Locks: GRANT/REVOKE update catalog rows only (no table lock beyond an
--   instant, no scan); the archive schema and functions are new objects.
--   At 1M rows: under 0.1 s.
-- Pre-conditions: none.
-- Rollback: drops the archive functions and the schema only when it is empty
--   (an archive that holds rows is kept), revokes exactly these grants and
--   gives PUBLIC back EXECUTE on the baseline trigger functions. The roles are
--   cluster-wide (other databases may use them), so they are kept.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['forgea_app', 'forgea_worker', 'forgea_readonly']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END;
$$;

-- Per-database defaults of the group roles: nobody waits on a lock, runs a
-- statement or sits idle in a transaction without end (see the header).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT * FROM (VALUES
            ('forgea_app', '30s'), ('forgea_worker', '60s'),
            ('forgea_readonly', '5min')
        ) AS t (role, statement_timeout)
    LOOP
        BEGIN
            EXECUTE format('ALTER ROLE %I IN DATABASE %I SET lock_timeout = %L',
                r.role, current_database(), '5s');
            EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L',
                r.role, current_database(), r.statement_timeout);
            EXECUTE format(
                'ALTER ROLE %I IN DATABASE %I SET idle_in_transaction_session_timeout = %L',
                r.role, current_database(), '60s');
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING
                'V0002: role % may not be altered by %: its timeouts are not set',
                r.role, current_user
                USING HINT = format(
                    'as a superuser: ALTER ROLE %I IN DATABASE %I SET lock_timeout = %L, '
                    'then statement_timeout = %L, idle_in_transaction_session_timeout = %L',
                    r.role, current_database(), '5s', r.statement_timeout, '60s');
        END;
    END LOOP;
END;
$$;

-- forgea_app: the web app (auth adapter, lab admin, session lifecycle, audit)
GRANT SELECT, INSERT, UPDATE, DELETE
ON "User", "Account", "Session", "VerificationToken", "AuthIdentity",
"AuthSession"
TO forgea_app;

-- "Lab": the columns the app edits (not "id"): column-level UPDATE does not
-- let it LOCK the table in any mode above ROW EXCLUSIVE
GRANT SELECT, INSERT ON "Lab" TO forgea_app;
GRANT UPDATE (
    "title", "epic", "failureClass", "sourceGithubIssueUrl", "repoVersion",
    "baseRepoUrl", "constraints"
) ON "Lab" TO forgea_app;
GRANT SELECT, INSERT ON "LabSession" TO forgea_app;
GRANT UPDATE ("status", "lastActivityAt") ON "LabSession" TO forgea_app;

GRANT SELECT, INSERT ON "VerificationLog", "ResumeBullet", "AuditLog"
TO forgea_app;

-- forgea_worker: reads what a verification run needs
GRANT SELECT ON "Lab", "LabSession" TO forgea_worker;

-- forgea_readonly: everything but secrets
GRANT SELECT
ON "User", "AuthIdentity", "Lab", "LabSession", "VerificationLog",
"ResumeBullet", "AuditLog"
TO forgea_readonly;

GRANT SELECT (
    "id", "userId", "type", "provider", "providerAccountId", "expires_at",
    "token_type", "scope", "session_state"
) ON "Account" TO forgea_readonly;

GRANT SELECT ("id", "userId", "expires") ON "Session" TO forgea_readonly;

GRANT SELECT ("id", "userId", "expires") ON "AuthSession" TO forgea_readonly;

REVOKE ALL ON FUNCTION prevent_destructive_action() FROM PUBLIC;

REVOKE ALL ON FUNCTION prevent_auditlog_mutations() FROM PUBLIC;

REVOKE ALL ON FUNCTION enforce_lab_session_status_transition() FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS forgea_archive;

REVOKE ALL ON SCHEMA forgea_archive FROM PUBLIC;

CREATE FUNCTION forgea_archive_copy(p_table regclass, p_tag text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target text := format(
        '%s_%s_%s',
        (SELECT c.relname FROM pg_class AS c WHERE c.oid = p_table),
        p_tag,
        to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISSMS')
    );
    n bigint;
BEGIN
    EXECUTE format(
        'CREATE TABLE forgea_archive.%I AS SELECT to_jsonb(t) AS "row" FROM %s AS t',
        target, p_table
    );
    GET DIAGNOSTICS n = ROW_COUNT;
    EXECUTE format(
        'COMMENT ON TABLE forgea_archive.%I IS %L',
        target,
        format(
            'archived by the rollback of %s: %s rows of %s at %s UTC; not restored',
            p_tag, n, p_table,
            to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')
        )
    );
    RAISE NOTICE 'archived % rows of % into forgea_archive.%',
        n, p_table, quote_ident(target);
    RETURN target;
END;
$$;

REVOKE ALL ON FUNCTION forgea_archive_copy(regclass, text) FROM PUBLIC;

CREATE FUNCTION forgea_rollback_preserving(
    p_rollback text, p_reason text, p_detail text
)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(current_setting('forgea.rollback_preserve', true), '') = 'on' THEN
        RETURN true;
    END IF;
    RAISE EXCEPTION 'rollback of % refused: %', p_rollback, p_reason
        USING ERRCODE = 'FM002',
        DETAIL = p_detail,
        HINT = 'Nothing was changed. To archive the rows into forgea_archive and '
        || 'roll back anyway: harness rollback --preserve '
        || '(psql: SET forgea.rollback_preserve = on).';
END;
$$;

REVOKE ALL ON FUNCTION forgea_rollback_preserving(text, text, text) FROM PUBLIC;

CREATE FUNCTION forgea_archive_if_preserving(p_table regclass, p_tag text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_any boolean;
BEGIN
    IF coalesce(current_setting('forgea.rollback_preserve', true), '') <> 'on' THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', p_table) INTO v_any;
    IF NOT v_any THEN
        RETURN NULL;
    END IF;
    RETURN public.forgea_archive_copy(p_table, p_tag);
END;
$$;

REVOKE ALL ON FUNCTION forgea_archive_if_preserving(regclass, text) FROM PUBLIC;

-- The unrestored archive of p_source made by the rollback of p_tag, or NULL.
CREATE FUNCTION forgea_archive_pending(p_source text, p_tag text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_names text[];
BEGIN
    SELECT array_agg(c.relname::text ORDER BY c.relname)
    INTO v_names
    FROM pg_catalog.pg_class AS c
    INNER JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid
    WHERE
        n.nspname = 'forgea_archive'
        AND c.relkind = 'r'
        AND left(c.relname, length(p_source) + length(p_tag) + 2)
        = p_source || '_' || p_tag || '_'
        AND substr(c.relname, length(p_source) + length(p_tag) + 3)
        ~ '^[0-9]{8}T[0-9]{9}$'
        AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'restored%';
    IF cardinality(v_names) > 1 THEN
        RAISE EXCEPTION
            'apply of % refused: more than one unrestored archive of %', p_tag, p_source
            USING ERRCODE = 'FM003',
            DETAIL = 'forgea_archive tables: ' || array_to_string(v_names, ', '),
            HINT = 'Restore or mark all but one restored (COMMENT ON TABLE '
            || 'forgea_archive."..." IS ''restored by hand''), then apply again.';
    END IF;
    RETURN v_names[1];
END;
$$;

REVOKE ALL ON FUNCTION forgea_archive_pending(text, text) FROM PUBLIC;

-- Runs p_statement (an INSERT or UPDATE reading forgea_archive.p_archive into
-- p_table); a constraint violation becomes FM003 naming the row; on success the
-- archive is marked restored in its comment and the row count returned.
CREATE FUNCTION forgea_archive_put_back(
    p_archive text, p_tag text, p_table regclass, p_statement text
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rows bigint;
    v_msg text;
    v_detail text;
BEGIN
    BEGIN
        EXECUTE p_statement;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
    EXCEPTION WHEN integrity_constraint_violation THEN
        GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION
            'apply of % refused: archived rows of forgea_archive.% cannot be restored into % exactly',
            p_tag, quote_ident(p_archive), p_table
            USING ERRCODE = 'FM003',
            DETAIL = v_msg || coalesce(': ' || v_detail, ''),
            HINT = 'Nothing of this file was applied and the archive is unchanged. '
            || 'Put back what the row needs (or move the row out of the archive), '
            || 'then apply again.';
    END;
    EXECUTE format(
        'COMMENT ON TABLE forgea_archive.%I IS %L',
        p_archive,
        format(
            'restored by %s: %s rows at %s UTC (%s)',
            p_tag, v_rows,
            to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
            obj_description(
                format('forgea_archive.%I', p_archive)::regclass, 'pg_class'
            )
        )
    );
    RAISE NOTICE 'restored % rows from forgea_archive.%', v_rows, quote_ident(p_archive);
    RETURN v_rows;
END;
$$;

REVOKE ALL ON FUNCTION forgea_archive_put_back(text, text, regclass, text) FROM PUBLIC;

-- Whole rows: INSERT every archived row of p_table's unrestored archive of p_tag.
CREATE FUNCTION forgea_archive_restore(p_table regclass, p_tag text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_archive text := public.forgea_archive_pending(
        (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid = p_table), p_tag
    );
BEGIN
    IF v_archive IS NULL THEN
        RETURN 0;
    END IF;
    RETURN public.forgea_archive_put_back(v_archive, p_tag, p_table, format(
        'INSERT INTO %s SELECT (jsonb_populate_record(NULL::%s, a."row")).* '
        'FROM forgea_archive.%I AS a',
        p_table, p_table, v_archive
    ));
END;
$$;

REVOKE ALL ON FUNCTION forgea_archive_restore(regclass, text) FROM PUBLIC;

-- Columns: put archived values of p_columns back into the rows of p_table with
-- the archived "id"; every archived id must still exist.
CREATE FUNCTION forgea_archive_restore_columns(
    p_table regclass, p_source text, p_tag text, p_columns text[]
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_archive text := public.forgea_archive_pending(p_source, p_tag);
    v_missing text;
BEGIN
    IF v_archive IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format(
        'SELECT string_agg(x.id, '', '') FROM ('
        'SELECT a."row" ->> ''id'' AS id FROM forgea_archive.%I AS a '
        'WHERE NOT EXISTS (SELECT 1 FROM %s AS t WHERE t."id"::text = a."row" ->> ''id'') '
        'ORDER BY 1 LIMIT 20) AS x',
        v_archive, p_table
    ) INTO v_missing;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION
            'apply of % refused: archived % values of forgea_archive.% belong to rows deleted from % while rolled back',
            p_tag, array_to_string(p_columns, ', '), quote_ident(v_archive), p_table
            USING ERRCODE = 'FM003',
            DETAIL = format('%s ids (first 20): %s', p_table, v_missing),
            HINT = 'Nothing of this file was applied and the archive is unchanged.';
    END IF;
    RETURN public.forgea_archive_put_back(v_archive, p_tag, p_table, format(
        'UPDATE %s AS t SET (%s) = ROW(%s) FROM ('
        'SELECT (jsonb_populate_record(NULL::%s, a."row")).* '
        'FROM forgea_archive.%I AS a) AS r WHERE t."id" = r."id"',
        p_table,
        (SELECT string_agg(quote_ident(c), ', ') FROM unnest(p_columns) AS c),
        (SELECT string_agg('r.' || quote_ident(c), ', ') FROM unnest(p_columns) AS c),
        p_table, v_archive
    ));
END;
$$;

REVOKE ALL ON FUNCTION forgea_archive_restore_columns(regclass, text, text, text[])
FROM PUBLIC;
