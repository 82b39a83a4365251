-- V0051__lab_session_identity_guard: a session's identity and history never change
--
-- What: labsession_identity_guard (BEFORE UPDATE on "LabSession", row, ENABLE
--   ALWAYS), function guard_lab_session_identity(). For every role, the owner
--   and a superuser under session_replication_role = replica included:
--     * the identity of a session never changes: "id", "userId" (who),
--       "labId" and "labVersionId" (which lab and version; a NULL version may
--       still be filled once, as the V0012 backfill does), "userForkUrl" (which
--       repository) and "startedAt" (when it started)               (FA002)
--     * a terminal session (VERIFIED_PASS, FAILED) is a closed record: apart
--       from the activity columns "lastActivityAt" and "previewUrl", no column
--       changes any more, including any column a later migration adds (FA002)
--       ("status" and "completedAt" stay the lifecycle guard's: FL001 / FA002,
--       including the one-time completedAt backfill of legacy sessions).
--       lastActivityAt stays open because the app's transitionLabSession
--       allows VERIFIED_PASS -> VERIFIED_PASS with data; it is activity, not
--       evidence (completedAt is when the session ended).
--   Every session keeps what the app does: status moves (lifecycle guard),
--   lastActivityAt, previewUrl. The message names the session, the column and
--   the old and new values.
--   The trigger's name sorts before labsession_lifecycle_guard, so it fires
--   first (PostgreSQL fires row triggers of one event in name order).
-- Why: an UPDATE could move a VERIFIED_PASS session, and with it the victim's
--   PASS attempt, to another user; the lifecycle guard only looked at status,
--   completedAt, labId and labVersionId.
-- Locks: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on "LabSession" for an
--   instant (no scan).
-- Rollback: drops the trigger and its function. No data involved.

CREATE FUNCTION guard_lab_session_identity()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_old jsonb := to_jsonb(OLD);
    v_new jsonb := to_jsonb(NEW);
    v_frozen text[] := ARRAY['id', 'userId', 'labId', 'userForkUrl', 'startedAt'];
    v_why text := 'a session''s identity never changes';
    v_col text;
BEGIN
    IF OLD."labVersionId" IS NOT NULL THEN
        v_frozen := v_frozen || 'labVersionId'::text;
    END IF;
    IF OLD."status"::text IN ('VERIFIED_PASS', 'FAILED') THEN
        v_why := format('the session is %s (terminal)', OLD."status");
        v_frozen := v_frozen || ARRAY(
            SELECT k.key FROM jsonb_object_keys(v_old) AS k (key)
            WHERE k.key NOT IN (
                'previewUrl', 'lastActivityAt', 'status', 'completedAt', 'labVersionId'
            )
            ORDER BY k.key
        );
    END IF;
    FOREACH v_col IN ARRAY v_frozen LOOP
        IF v_new -> v_col IS DISTINCT FROM v_old -> v_col THEN
            RAISE EXCEPTION
                'LabSession %: UPDATE of % refused (% -> %): %',
                OLD."id", v_col,
                coalesce(quote_literal(left(v_old ->> v_col, 200)), 'NULL'),
                coalesce(quote_literal(left(v_new ->> v_col, 200)), 'NULL'),
                v_why
                USING ERRCODE = 'FA002';
        END IF;
    END LOOP;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION guard_lab_session_identity() FROM PUBLIC;

CREATE TRIGGER labsession_identity_guard
BEFORE UPDATE ON "LabSession"
FOR EACH ROW EXECUTE FUNCTION guard_lab_session_identity();

ALTER TABLE "LabSession"
ENABLE ALWAYS TRIGGER labsession_identity_guard;
