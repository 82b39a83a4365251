-- Rollback of V0007__lab_session_and_attempt_guards
--
-- What: drops the identity guard, the version default, the attempt guards and
--   the VerificationLog freeze, and restores the production body of
--   enforce_lab_session_status_transition() (as the baseline creates it;
--   EXECUTE stays revoked from PUBLIC as V0002 left it; CREATE OR REPLACE
--   without a SET clause also removes the pinned search_path, as in
--   production).
-- Transaction: yes.
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE on "LabSession",
--   "VerificationAttempt" and "VerificationLog", an instant.

DROP TRIGGER labsession_identity_guard ON "LabSession";

DROP FUNCTION guard_lab_session_identity();

DROP TRIGGER labsession_version_default ON "LabSession";

DROP FUNCTION lab_session_version_default();

CREATE OR REPLACE FUNCTION enforce_lab_session_status_transition()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.status <> 'IN_PROGRESS' THEN
      RAISE EXCEPTION 'Invalid initial LabSession status: %', NEW.status;
    END IF;
    RETURN NEW;
  END IF;

  IF TG_OP = 'UPDATE' THEN
    IF NEW.status = OLD.status THEN
      RETURN NEW;
    END IF;

    IF OLD.status = 'IN_PROGRESS' AND NEW.status IN ('IN_PROGRESS', 'STUCK', 'VERIFIED_PASS', 'DEFERRED') THEN
      RETURN NEW;
    ELSIF OLD.status = 'STUCK' AND NEW.status IN ('STUCK', 'IN_PROGRESS', 'VERIFIED_PASS', 'DEFERRED') THEN
      RETURN NEW;
    ELSIF OLD.status = 'DEFERRED' AND NEW.status IN ('DEFERRED', 'IN_PROGRESS') THEN
      RETURN NEW;
    ELSIF OLD.status = 'VERIFIED_PASS' AND NEW.status IN ('VERIFIED_PASS') THEN
      RETURN NEW;
    END IF;

    RAISE EXCEPTION 'Invalid LabSession status transition: % -> %', OLD.status, NEW.status;
  END IF;

  RETURN NEW;
END;
$$;

DROP TRIGGER verificationattempt_insert_guard ON "VerificationAttempt";

DROP TRIGGER verificationattempt_no_truncate ON "VerificationAttempt";

DROP TRIGGER verificationattempt_append_only ON "VerificationAttempt";

DROP FUNCTION verification_attempt_insert_guard();

DROP FUNCTION transition_api_caller(text);

DROP TRIGGER verificationlog_frozen ON "VerificationLog";

DROP FUNCTION verification_log_frozen();
