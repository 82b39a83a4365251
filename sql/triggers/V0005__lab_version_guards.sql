-- V0005__lab_version_guards: LabVersion is append-only and follows its lab
--
-- What:
--   * labversion_append_only / labversion_no_truncate: UPDATE, DELETE and
--     TRUNCATE of "LabVersion" are refused for everyone (FA001), ALWAYS.
--   * lab_version_snapshot (AFTER INSERT OR UPDATE on "Lab", ALWAYS): a new lab
--     gets version 1 at once; an update that changes any versioned field
--     (title, epic, failureClass, sourceGithubIssueUrl, repoVersion,
--     baseRepoUrl, constraints) appends version max + 1. Sessions keep the
--     version they point at, so their lab never changes under them.
--     SECURITY DEFINER because the app may write "Lab" but not "LabVersion".
--     Concurrent updates of one lab serialise on the lab's row lock, so
--     version numbers stay dense; UNIQUE(labId, versionNumber) is the backstop.
-- Why: CONTRACT section 4 (LabVersion is immutable; a later change of a lab
--   yields a new version).
-- Transaction: yes.
-- Locks: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on "Lab" and "LabVersion"
--   for an instant (blocks writes, not reads; no scan).
-- Pre-conditions: none.
-- Rollback: drops the triggers and the function. No data involved.

CREATE FUNCTION lab_version_snapshot()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_snapshot jsonb := jsonb_build_object(
        'title', NEW."title",
        'epic', NEW."epic",
        'failureClass', NEW."failureClass",
        'sourceGithubIssueUrl', NEW."sourceGithubIssueUrl",
        'repoVersion', NEW."repoVersion",
        'baseRepoUrl', NEW."baseRepoUrl",
        'constraints', NEW."constraints"
    );
BEGIN
    IF TG_OP = 'UPDATE' AND (
        SELECT v."snapshot" FROM public."LabVersion" AS v
        WHERE v."labId" = NEW."id"
        ORDER BY v."versionNumber" DESC LIMIT 1
    ) = v_snapshot THEN
        RETURN NULL;
    END IF;

    INSERT INTO public."LabVersion" (
        "labId", "versionNumber", "repoVersion", "baseRepoUrl", "snapshot"
    )
    SELECT
        NEW."id",
        coalesce(max(v."versionNumber"), 0) + 1,
        NEW."repoVersion",
        NEW."baseRepoUrl",
        v_snapshot
    FROM public."LabVersion" AS v
    WHERE v."labId" = NEW."id";
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION lab_version_snapshot() FROM PUBLIC;

CREATE TRIGGER labversion_append_only
BEFORE UPDATE OR DELETE ON "LabVersion"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER labversion_no_truncate
BEFORE TRUNCATE ON "LabVersion"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER lab_version_snapshot
AFTER INSERT OR UPDATE ON "Lab"
FOR EACH ROW EXECUTE FUNCTION lab_version_snapshot();

ALTER TABLE "LabVersion"
ENABLE ALWAYS TRIGGER labversion_append_only,
ENABLE ALWAYS TRIGGER labversion_no_truncate;

ALTER TABLE "Lab"
ENABLE ALWAYS TRIGGER lab_version_snapshot;
