-- V0002__roles: the group roles and the privileges of the baseline tables
--
-- What: creates the NOLOGIN group roles forgea_app (web app and webhook),
--   forgea_worker (verification workers) and forgea_readonly (reporting) when
--   they are missing, and grants them what the baseline tables need.
--   forgea_readonly gets column-level SELECT that leaves out every secret: the
--   OAuth tokens of "Account" (refresh_token, access_token, id_token), the
--   session tokens of "Session" and "AuthSession", and "VerificationToken".
--   EXECUTE on the baseline trigger functions is revoked from PUBLIC (trigger
--   functions never need it; triggers fire regardless).
-- Why: CONTRACT section 6. Works for a migrating role that is not a superuser
--   but has CREATEROLE (managed PostgreSQL): only CREATE ROLE and GRANTs on
--   objects it owns.
-- Locks: GRANT/REVOKE take a brief lock on each table's catalog row only.
-- Rollback: revokes exactly these grants and restores PUBLIC's EXECUTE. The
--   roles are cluster-wide (other databases may use them), so they are kept.

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

-- forgea_app: the web app (auth adapter, lab admin, session lifecycle, audit)
GRANT SELECT, INSERT, UPDATE, DELETE
ON "User", "Account", "Session", "VerificationToken", "AuthIdentity",
"AuthSession"
TO forgea_app;
GRANT SELECT, INSERT, UPDATE ON "Lab", "LabSession" TO forgea_app;
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
