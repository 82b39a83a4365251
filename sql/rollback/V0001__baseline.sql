-- Rollback of V0001__baseline: drop the production baseline of an EMPTY database.
--
-- What: drops every object V0001 created, in dependency order.
-- Safety: refuses with SQLSTATE FM002, naming the tables, if any baseline table
--   holds a row: the baseline holds production data and is never dropped with it.
--   The harness also refuses to roll back the baseline of an adopted database.
-- Locks: ACCESS EXCLUSIVE on each baseline table while it is dropped.

DO $$
DECLARE
    t text;
    n bigint;
    non_empty text[] := '{}';
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'User', 'Account', 'Session', 'VerificationToken', 'AuthIdentity',
        'AuthSession', 'Lab', 'LabSession', 'VerificationLog', 'ResumeBullet',
        'AuditLog'
    ] LOOP
        EXECUTE format('SELECT count(*) FROM %I', t) INTO n;
        IF n > 0 THEN
            non_empty := non_empty || format('%s (%s rows)', t, n);
        END IF;
    END LOOP;
    IF cardinality(non_empty) > 0 THEN
        RAISE EXCEPTION 'rollback of V0001__baseline refused: tables hold rows: %',
            array_to_string(non_empty, ', ')
            USING ERRCODE = 'FM002',
            HINT = 'The baseline is never dropped with data in it.';
    END IF;
END;
$$;

DROP TABLE "AuditLog";
DROP TABLE "ResumeBullet";
DROP TABLE "VerificationLog";
DROP TABLE "LabSession";
DROP TABLE "Lab";
DROP TABLE "AuthSession";
DROP TABLE "AuthIdentity";
DROP TABLE "VerificationToken";
DROP TABLE "Session";
DROP TABLE "Account";
DROP TABLE "User";

DROP FUNCTION enforce_lab_session_status_transition();
DROP FUNCTION prevent_auditlog_mutations();
DROP FUNCTION prevent_destructive_action();

DROP TYPE "FailureClass";
DROP TYPE "LabStatus";
DROP TYPE "SubscriptionTier";
DROP TYPE "AuthProvider";
DROP TYPE "UserRole";
