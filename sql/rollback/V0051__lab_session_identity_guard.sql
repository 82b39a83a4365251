-- Rollback of V0051__lab_session_identity_guard
--
-- What: drops the trigger and its function. No data involved.
-- Locks: SHARE ROW EXCLUSIVE on "LabSession", an instant.

DROP TRIGGER labsession_identity_guard ON "LabSession";
DROP FUNCTION guard_lab_session_identity();
