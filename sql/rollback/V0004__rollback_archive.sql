-- Rollback of V0004__rollback_archive
--
-- What: drops forgea_rollback_preserving(), forgea_archive_copy() and the
--   restore functions (forgea_archive_if_preserving, _pending,
--   _put_back, _restore, _restore_columns); drops
--   schema forgea_archive only if it
--   holds nothing (RESTRICT fails otherwise, so an archive with rows refuses).
-- Safety: archived rows are never dropped by a rollback. Locks: none.

DROP FUNCTION forgea_rollback_preserving(text, text, text);

DROP FUNCTION forgea_archive_restore_columns(regclass, text, text, text[]);

DROP FUNCTION forgea_archive_restore(regclass, text);

DROP FUNCTION forgea_archive_put_back(text, text, regclass, text);

DROP FUNCTION forgea_archive_pending(text, text);

DROP FUNCTION forgea_archive_if_preserving(regclass, text);

DROP FUNCTION forgea_archive_copy(regclass, text);

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid
        WHERE n.nspname = 'forgea_archive'
    ) THEN
        RAISE NOTICE 'forgea_archive holds archived tables: schema kept';
    ELSE
        DROP SCHEMA IF EXISTS forgea_archive;
    END IF;
END;
$$;
