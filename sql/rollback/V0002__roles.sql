-- Rollback of V0002__roles: revoke the baseline grants.
--
-- What: revokes every privilege V0002 granted and gives PUBLIC back EXECUTE on
--   the baseline trigger functions (the state Prisma left).
-- Safety: no data is touched. The roles themselves are cluster-wide and may be
--   used by other databases, so they are left in place (documented in README).
-- Locks: brief catalog locks only.

REVOKE ALL
ON "User", "Account", "Session", "VerificationToken", "AuthIdentity",
"AuthSession", "Lab", "LabSession", "VerificationLog", "ResumeBullet",
"AuditLog"
FROM forgea_app, forgea_worker, forgea_readonly;

GRANT EXECUTE ON FUNCTION prevent_destructive_action() TO PUBLIC;
GRANT EXECUTE ON FUNCTION prevent_auditlog_mutations() TO PUBLIC;
GRANT EXECUTE ON FUNCTION enforce_lab_session_status_transition() TO PUBLIC;
