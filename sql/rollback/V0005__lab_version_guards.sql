-- Rollback of V0005__lab_version_guards
--
-- What: drops the LabVersion guards and the Lab -> LabVersion trigger.
-- Transaction: yes.
-- Safety: no data involved. Locks: SHARE ROW EXCLUSIVE per table, an instant.

DROP TRIGGER lab_version_snapshot ON "Lab";

DROP TRIGGER labversion_no_truncate ON "LabVersion";

DROP TRIGGER labversion_append_only ON "LabVersion";

DROP FUNCTION lab_version_snapshot();
