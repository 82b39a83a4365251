-- Rollback of V0002__roles_and_archive
--
-- What: drops the archive functions; drops schema forgea_archive only if it
--   holds nothing (archived rows are never dropped by a rollback); revokes
--   every privilege V0002 granted and gives PUBLIC back EXECUTE on the
--   baseline trigger functions (the state Prisma left); resets the roles'
--   timeouts in this database. The roles are
--   cluster-wide and may be used by other databases, so they are kept.
-- Transaction: yes.
-- Locks: catalog only. No data is touched.

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

REVOKE ALL
ON "User", "Account", "Session", "VerificationToken", "AuthIdentity",
"AuthSession", "Lab", "LabSession", "VerificationLog", "ResumeBullet",
"AuditLog"
FROM forgea_app, forgea_worker, forgea_readonly;

DO $$
DECLARE
    r text;
    g text;
BEGIN
    FOREACH r IN ARRAY ARRAY['forgea_app', 'forgea_worker', 'forgea_readonly'] LOOP
        FOREACH g IN ARRAY ARRAY[
            'lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout'
        ] LOOP
            BEGIN
                EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET %I',
                    r, current_database(), g);
            EXCEPTION WHEN insufficient_privilege OR undefined_object THEN
                RAISE WARNING 'rollback of V0002: % of role % not reset', g, r;
            END;
        END LOOP;
    END LOOP;
END;
$$;

GRANT EXECUTE ON FUNCTION prevent_destructive_action() TO PUBLIC;

GRANT EXECUTE ON FUNCTION prevent_auditlog_mutations() TO PUBLIC;

GRANT EXECUTE ON FUNCTION enforce_lab_session_status_transition() TO PUBLIC;
