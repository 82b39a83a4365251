-- V0015__github_repo_mapping_guards: keep GitHubRepoMapping honest
--
-- What:
--   githubrepomapping_guard (BEFORE INSERT OR UPDATE, row) ->
--     guard_github_repo_mapping():
--       INSERT: locks the session row (FOR SHARE, so a concurrent status change
--         waits until this mapping is visible) and sets "sessionActive" from the
--         session's status. Callers cannot choose the flag.
--       UPDATE: every column is immutable (FA002) except
--         * "providerRepoId" and "defaultBranch": NULL -> value once;
--         * "sessionActive": may only change to mirror the session's status.
--   githubrepomapping_append_only (BEFORE DELETE, row) and
--   githubrepomapping_no_truncate (BEFORE TRUNCATE, statement) ->
--     forbid_ledger_mutation() (FA001).
--   labsession_repo_mapping_active (AFTER UPDATE OF status ON "LabSession", row)
--     -> sync_github_repo_mapping_active(): a session entering a terminal state
--     clears its mapping's "sessionActive", which frees the repository for a new
--     session (the partial unique indexes only cover active rows).
--   labsession_repo_mapping_autobind (AFTER INSERT ON "LabSession", constraint
--     trigger, DEFERRABLE INITIALLY DEFERRED) -> autobind_github_repo_mapping():
--     at commit, a session that has no mapping yet (inserted by the app's current
--     client rather than create_lab_session) gets one from its userForkUrl, so a
--     rolling deploy never leaves new sessions unbound. An unparseable URL or a
--     repository already bound to another active session leaves the session
--     unmapped with a WARNING; list_unmapped_lab_sessions() (V0014) reports it.
-- Why: CONTRACT section 4 (binding; at most one active session per repository).
-- Transaction: yes.
-- Locks: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on "GitHubRepoMapping" and
--   "LabSession" for an instant (blocks writes, not reads; no scan).
-- Pre-conditions: none.
-- Rollback: drops the triggers and functions. No data involved.

CREATE FUNCTION guard_github_repo_mapping()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_status text;
BEGIN
    SELECT pg_catalog.format('%s', s."status") INTO v_status
    FROM public."LabSession" AS s WHERE s."id" = NEW."sessionId"
    FOR SHARE;
    IF TG_OP = 'INSERT' THEN
        NEW."sessionActive" := coalesce(lab_status_is_active(v_status), false);
        RETURN NEW;
    END IF;
    IF (NEW."id", NEW."sessionId", NEW."provider", NEW."repoFullName",
        NEW."repoUrl", NEW."idempotencyKey", NEW."requestDigest",
        NEW."createdAt")
        IS DISTINCT FROM
        (OLD."id", OLD."sessionId", OLD."provider", OLD."repoFullName",
        OLD."repoUrl", OLD."idempotencyKey", OLD."requestDigest",
        OLD."createdAt")
        OR OLD."providerRepoId" IS NOT NULL
        AND NEW."providerRepoId" IS DISTINCT FROM OLD."providerRepoId"
        OR OLD."defaultBranch" IS NOT NULL
        AND NEW."defaultBranch" IS DISTINCT FROM OLD."defaultBranch"
        OR NEW."sessionActive" IS DISTINCT FROM OLD."sessionActive"
        AND NEW."sessionActive" IS DISTINCT FROM lab_status_is_active(v_status)
        THEN
        RAISE EXCEPTION
            'GitHubRepoMapping: UPDATE of row % refused: only providerRepoId/defaultBranch (NULL -> value, once) and sessionActive (mirrors the session) may change; providerRepoId % -> %',
            OLD."id", OLD."providerRepoId", NEW."providerRepoId"
            USING ERRCODE = 'FA002';
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION guard_github_repo_mapping() FROM PUBLIC;

CREATE TRIGGER githubrepomapping_guard
BEFORE INSERT OR UPDATE ON "GitHubRepoMapping"
FOR EACH ROW EXECUTE FUNCTION guard_github_repo_mapping();

CREATE TRIGGER githubrepomapping_append_only
BEFORE DELETE ON "GitHubRepoMapping"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER githubrepomapping_no_truncate
BEFORE TRUNCATE ON "GitHubRepoMapping"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

CREATE FUNCTION sync_github_repo_mapping_active()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    UPDATE public."GitHubRepoMapping" AS m
    SET "sessionActive" = lab_status_is_active(pg_catalog.format('%s', NEW."status"))
    WHERE
        m."sessionId" = NEW."id"
        AND m."sessionActive" IS DISTINCT FROM
        lab_status_is_active(pg_catalog.format('%s', NEW."status"));
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION sync_github_repo_mapping_active() FROM PUBLIC;

CREATE TRIGGER labsession_repo_mapping_active
AFTER UPDATE OF "status" ON "LabSession"
FOR EACH ROW
WHEN (OLD."status" IS DISTINCT FROM NEW."status")
EXECUTE FUNCTION sync_github_repo_mapping_active();

CREATE FUNCTION autobind_github_repo_mapping()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_url text;
    v_fork text;
    n bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM public."GitHubRepoMapping" AS m
        WHERE m."sessionId" = NEW."id") THEN
        RETURN NULL;
    END IF;
    SELECT s."userForkUrl" INTO v_fork
    FROM public."LabSession" AS s WHERE s."id" = NEW."id";
    v_url := canonical_repo_url(v_fork);
    IF v_url IS NOT NULL THEN
        INSERT INTO public."GitHubRepoMapping" AS m
        ("sessionId", "repoFullName", "repoUrl")
        VALUES (NEW."id", substr(v_url, 20), v_url)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = 1 THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE WARNING
        'LabSession % left without GitHubRepoMapping: fork URL % is unparseable or bound to another active session',
        NEW."id", left(v_fork, 200);
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION autobind_github_repo_mapping() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER labsession_repo_mapping_autobind
AFTER INSERT ON "LabSession"
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION autobind_github_repo_mapping();

ALTER TABLE "GitHubRepoMapping"
ENABLE ALWAYS TRIGGER githubrepomapping_guard,
ENABLE ALWAYS TRIGGER githubrepomapping_append_only,
ENABLE ALWAYS TRIGGER githubrepomapping_no_truncate;

ALTER TABLE "LabSession"
ENABLE ALWAYS TRIGGER labsession_repo_mapping_active,
ENABLE ALWAYS TRIGGER labsession_repo_mapping_autobind;
