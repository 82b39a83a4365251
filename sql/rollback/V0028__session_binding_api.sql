-- Rollback of V0028__session_binding_api
--
-- What: drops create_lab_session, resolve_lab_session and api_bad_input. No data
--   involved (sessions and mappings stay). Locks: none on tables.

DROP FUNCTION resolve_lab_session(bigint, text);
DROP FUNCTION create_lab_session(uuid, uuid, text, bigint, text);
DROP FUNCTION api_bad_input(text, text, text, text);
