-- V0004__rollback_archive: where rollbacks preserve rows the old schema cannot hold
--
-- What: creates schema forgea_archive (owner-only) and the function
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
-- Why: a rollback never silently drops rows it cannot put back (README, rollback
--   rules). Archived tables are plain tables: nothing reads them automatically.
-- Locks: none on existing objects.
-- Rollback: drops the function; drops the schema only when it is empty (an
--   archive that holds rows is never dropped).

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
