-- Rollback of V0011__lab_session_lifecycle_v2
--
-- What: drops labsession_version_default and restores the production body of
--   enforce_lab_session_status_transition() (as created by V0001, with the
--   EXECUTE privilege V0002 left: none for PUBLIC). CREATE OR REPLACE without
--   a SET clause also removes the pinned search_path, as in production.
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE on "LabSession", an
--   instant.

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
