-- V0050__lab_session_app_update_columns: forgea_app may UPDATE only what the app writes
--
-- What: replaces forgea_app's table-level UPDATE on "LabSession" with
--   column-level UPDATE on "status" and "lastActivityAt", the only columns the
--   application writes (transitionLabSession() sends Prisma's updateMany with
--   the new status and, from the webhook, lastActivityAt; updateMany sends only
--   the columns it is given, and LabSession has no @updatedAt). Any other
--   column in an UPDATE by forgea_app (userId, labId, labVersionId,
--   userForkUrl, startedAt, completedAt, previewUrl, id) is refused by
--   PostgreSQL with 42501 before any trigger runs. SELECT and INSERT stay.
--   previewUrl is not granted: no application code writes it today; when a
--   feature does, granting it is one line (it is not identity, V0051 lets it
--   change even on a terminal session).
-- Why: a forgea_app login could move a VERIFIED_PASS session to another user
--   (UPDATE "userId", "userForkUrl", "startedAt"); V0051 refuses that for every
--   role, this file refuses it to the app before any trigger runs.
-- Locks: REVOKE/GRANT update the catalog row of "LabSession" (no table lock
--   beyond an instant, no scan).
-- Rollback: revokes the column grants and restores the table-level UPDATE.

REVOKE UPDATE ON "LabSession" FROM forgea_app;
GRANT UPDATE ("status", "lastActivityAt") ON "LabSession" TO forgea_app;
