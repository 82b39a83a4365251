-- Rollback of V0050__lab_session_app_update_columns
--
-- What: revokes forgea_app's column-level UPDATE on "LabSession" (revoking the
--   table-level privilege revokes the column privileges too) and grants the
--   table-level UPDATE that V0002 gave. No data involved.
-- Locks: catalog only.

REVOKE UPDATE ON "LabSession" FROM forgea_app;
GRANT UPDATE ON "LabSession" TO forgea_app;
