-- V0011__lab_session_lifecycle_v2: the session state machine, completedAt, versions
--
-- What: replaces the body of enforce_lab_session_status_transition() (trigger
--   labsession_lifecycle_guard, BEFORE INSERT OR UPDATE on "LabSession", ALWAYS):
--     active:   IN_PROGRESS, STUCK, DEFERRED      terminal: VERIFIED_PASS, FAILED
--     IN_PROGRESS -> STUCK | VERIFIED_PASS | DEFERRED | FAILED
--     STUCK       -> IN_PROGRESS | VERIFIED_PASS | DEFERRED | FAILED
--     DEFERRED    -> IN_PROGRESS | FAILED
--     terminal    -> nothing                        (FL001)
--   * an insert must be IN_PROGRESS with no completedAt            (FL001)
--   * entering a terminal state sets completedAt to the current UTC time;
--     afterwards it never changes; while active it stays NULL     (FA002).
--     One exception, for the backfill of sessions that were already terminal
--     before this pack: a terminal session whose completedAt is NULL may have it
--     set once.
--   * VERIFIED_PASS needs a PASS "VerificationAttempt" of the session, for every
--     role, owner included                                         (FL002)
--   * labId never changes, labVersionId is set once (a NULL is filled by the
--     backfill) and never changes                                  (FA002)
--   New trigger labsession_version_default (BEFORE INSERT, ALWAYS): an insert
--   that omits "labVersionId" (the app's current Prisma client does) gets the
--   lab's latest version; a version of another lab is refused (FL004).
-- Why: CONTRACT section 4 (lifecycle, completedAt, LabVersion).
-- Locks: CREATE OR REPLACE FUNCTION and CREATE TRIGGER: SHARE ROW EXCLUSIVE on
--   "LabSession" for an instant; no scan.
-- Rollback: restores the production body of the function and drops the
--   version-default trigger.

CREATE OR REPLACE FUNCTION enforce_lab_session_status_transition()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_old_terminal boolean;
    v_new_terminal boolean := NEW."status"::text IN ('VERIFIED_PASS', 'FAILED');
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW."status" <> 'IN_PROGRESS' OR NEW."completedAt" IS NOT NULL THEN
            RAISE EXCEPTION
                'LabSession %: INSERT with status % and completedAt % refused: a session starts IN_PROGRESS with no completedAt',
                NEW."id", NEW."status", NEW."completedAt"
                USING ERRCODE = 'FL001';
        END IF;
        RETURN NEW;
    END IF;

    v_old_terminal := OLD."status"::text IN ('VERIFIED_PASS', 'FAILED');

    IF NEW."labId" <> OLD."labId"
        OR NEW."labVersionId" IS DISTINCT FROM OLD."labVersionId"
        AND OLD."labVersionId" IS NOT NULL THEN
        RAISE EXCEPTION
            'LabSession %: UPDATE of labId/labVersionId refused (% / % -> % / %)',
            OLD."id", OLD."labId", OLD."labVersionId",
            NEW."labId", NEW."labVersionId"
            USING ERRCODE = 'FA002';
    END IF;

    IF NEW."status" = OLD."status" THEN
        IF NEW."completedAt" IS DISTINCT FROM OLD."completedAt"
            AND NOT (v_old_terminal AND OLD."completedAt" IS NULL) THEN
            RAISE EXCEPTION
                'LabSession %: UPDATE of completedAt refused (% -> %) in status %',
                OLD."id", OLD."completedAt", NEW."completedAt", OLD."status"
                USING ERRCODE = 'FA002';
        END IF;
        RETURN NEW;
    END IF;

    IF v_old_terminal
        OR NOT (
            OLD."status" IN ('IN_PROGRESS', 'STUCK') AND NEW."status" <> OLD."status"
            OR OLD."status" = 'DEFERRED'
            AND NEW."status"::text IN ('IN_PROGRESS', 'FAILED')
        ) THEN
        RAISE EXCEPTION 'LabSession %: illegal status transition % -> %',
            OLD."id", OLD."status", NEW."status"
            USING ERRCODE = 'FL001';
    END IF;

    IF NEW."status" = 'VERIFIED_PASS' AND NOT EXISTS (
        SELECT 1 FROM public."VerificationAttempt" AS a
        WHERE a."sessionId" = NEW."id" AND a."result" = 'PASS'
    ) THEN
        RAISE EXCEPTION
            'LabSession %: VERIFIED_PASS refused: the session has no PASS VerificationAttempt',
            NEW."id"
            USING ERRCODE = 'FL002';
    END IF;

    IF v_new_terminal THEN
        NEW."completedAt" := timezone('UTC', now());
    ELSIF NEW."completedAt" IS NOT NULL THEN
        RAISE EXCEPTION
            'LabSession %: completedAt must stay NULL while active (status %)',
            OLD."id", NEW."status"
            USING ERRCODE = 'FA002';
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION lab_session_version_default()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF NEW."labVersionId" IS NULL THEN
        SELECT v."id" INTO NEW."labVersionId"
        FROM public."LabVersion" AS v
        WHERE v."labId" = NEW."labId"
        ORDER BY v."versionNumber" DESC
        LIMIT 1;
    ELSIF NOT EXISTS (
        SELECT 1 FROM public."LabVersion" AS v
        WHERE v."id" = NEW."labVersionId" AND v."labId" = NEW."labId"
    ) THEN
        RAISE EXCEPTION
            'LabSession %: labVersionId % is not a version of lab %',
            NEW."id", NEW."labVersionId", NEW."labId"
            USING ERRCODE = 'FL004';
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION lab_session_version_default() FROM PUBLIC;

CREATE TRIGGER labsession_version_default
BEFORE INSERT ON "LabSession"
FOR EACH ROW EXECUTE FUNCTION lab_session_version_default();

ALTER TABLE "LabSession"
ENABLE ALWAYS TRIGGER labsession_version_default;
