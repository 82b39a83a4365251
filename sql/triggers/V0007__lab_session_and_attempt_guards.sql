-- V0007__lab_session_and_attempt_guards: the session state machine and identity, attempts that cannot be forged
--
-- What:
--   * verificationattempt_append_only / verificationattempt_no_truncate:
--     UPDATE, DELETE and TRUNCATE refused for everyone, owner included (FA001).
--   * verificationattempt_insert_guard: an attempt must come from somewhere.
--     A row without a verification job must be the copy of a "VerificationLog"
--     row (same id, session and commit): that is how V0009 migrates the legacy
--     results. A row with a job may be inserted only by the INSERT statement
--     of complete_verification_job() (read from the call stack, see below),
--     for a job that has just reached the matching terminal status
--     (PASSED -> PASS, FAILED -> FAIL) with the same session and commit, at
--     most once per job (UNIQUE "verificationJobId": a second attempt of a
--     job is left to it, 23505). A job reaches PASSED only from RUNNING, under an
--     unexpired lease, inside complete_verification_job() (V0019), so a PASS
--     attempt, and with it VERIFIED_PASS (FL002), is the result of a lease
--     holder's completion. Until V0017 creates "VerificationJob" a row with a
--     job fails on the missing table (42P01): nothing carries a job before jobs
--     exist. Refusals raise FQ001. Privileges already keep forgea_app and
--     forgea_worker from inserting at all; this guard stops the owner too.
--   * verificationlog_frozen: INSERT into the legacy "VerificationLog" is
--     refused for everyone, owner included (FA001). forgea_app keeps its
--     INSERT privilege, so the app's current client is told why; this closes
--     the owner's road too, which would otherwise
--     let a new log row be "copied" into a PASS attempt.
--   All four fire ALWAYS (also under session_replication_role = replica).
--   * transition_api_caller(context): the name of the queue API function
--     (claim_verification_job, complete_verification_job,
--     requeue_expired_verification_jobs, of schema public) whose own statement
--     fired the calling guard, read from the guard's GET DIAGNOSTICS
--     PG_CONTEXT, or NULL. It holds only when the context is exactly: the
--     guard's frame, ONE statement, and as the outermost frame that function
--     (SECURITY DEFINER, in public, no function of that name in any other
--     schema but another session's temporary one), where the statement is, whole, the one its source holds at the
--     line the frame names. No setting, role or search_path can produce that;
--     a statement's text cannot forge the outermost frame; a trigger or a
--     function slipped in between adds frames. The guards of V0018 use it too.
--
--   replaces the body of enforce_lab_session_status_transition() (trigger
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
--
--   labsession_identity_guard (BEFORE UPDATE on "LabSession", row, ENABLE
--   ALWAYS), function guard_lab_session_identity(). For every role, the owner
--   and a superuser under session_replication_role = replica included:
--     * the identity of a session never changes: "id", "userId" (who),
--       "labId" and "labVersionId" (which lab and version; a NULL version may
--       still be filled once, as the V0008 backfill does), "userForkUrl" (which
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
-- Why: CONTRACT section 4 (lifecycle, completedAt, LabVersion, attempts);
--   the guards exist before V0008 and V0009 move any data.
-- Transaction: yes.
-- Locks: CREATE OR REPLACE FUNCTION and CREATE TRIGGER take SHARE ROW
--   EXCLUSIVE on "LabSession", "VerificationAttempt" and "VerificationLog"
--   for an instant (blocks writes, not reads; no scan).
-- Pre-conditions: none.
-- Rollback: drops the new triggers and functions and restores production's
--   body of enforce_lab_session_status_transition(). No data involved.

CREATE FUNCTION transition_api_caller(p_context text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_lines text[] := string_to_array(p_context, E'\n');
    v_last text;
    v_mid text;
    v_m text[];
    v_fn oid;
    v_head text;
    v_stmt text;
    v_src text;
BEGIN
    -- the outermost frame, written by the server for the function that runs
    -- the whole call (a statement's text cannot forge it: it is never last):
    -- "PL/pgSQL function NAME(ARGS) line N at SQL statement", taken apart
    -- with string functions (a regex with capture groups cost 0.16 ms per
    -- guard, three guards per job)
    v_last := v_lines[cardinality(v_lines)];
    IF length(v_last) < 35
        OR NOT starts_with(v_last, 'PL/pgSQL function ')
        OR right(v_last, 17) <> ' at SQL statement' THEN
        RETURN NULL;
    END IF;
    v_mid := substr(v_last, 19, length(v_last) - 35);
    v_m := ARRAY[split_part(v_mid, '(', 1), NULL, split_part(v_mid, ') line ', -1)];
    IF v_m[3] !~ '^[0-9]{1,9}$'
        OR length(v_mid) < length(v_m[1]) + length(v_m[3]) + 8 THEN
        RETURN NULL;
    END IF;
    v_m[2] := substr(v_mid, length(v_m[1]) + 2,
        length(v_mid) - length(v_m[1]) - length(v_m[3]) - 8);
    IF v_mid <> v_m[1] || '(' || v_m[2] || ') line ' || v_m[3]
        OR NOT (
        v_m[1] = 'claim_verification_job' AND v_m[2] = 'text,interval'
        OR v_m[1] = 'requeue_expired_verification_jobs' AND v_m[2] = ''
        OR v_m[1] = 'complete_verification_job'
        AND starts_with(v_m[2], 'uuid,text,"VerificationJobStatus",integer,jsonb,uuid')
    ) THEN
        RETURN NULL;
    END IF;
    -- that name renders unqualified only for the function in public, and no
    -- schema (this session's pg_temp included) may hold another function of that
    -- name; another session's temporary schema is never on this session's path,
    -- and counting it would let any connected role stop every worker
    IF EXISTS (
        SELECT 1 FROM pg_proc AS q
        WHERE q.proname = v_m[1] AND q.pronamespace <> 'public'::regnamespace
            AND NOT pg_is_other_temp_schema(q.pronamespace)
    ) THEN
        RETURN NULL;
    END IF;
    SELECT p.oid, p.prosrc INTO v_fn, v_src
    FROM pg_proc AS p
    WHERE p.proname = v_m[1] AND p.pronamespace = 'public'::regnamespace
        AND p.prosecdef
        AND p.oid::regprocedure::text = v_m[1] || '(' || v_m[2] || ')';
    IF v_fn IS NULL THEN
        RETURN NULL;
    END IF;
    -- the caller's own frame, then exactly one statement: the one that the
    -- API function's source holds, whole, at the line the frame names
    v_head := v_lines[1] || E'\nSQL statement "';
    IF NOT starts_with(p_context, v_head)
        OR substr(p_context, length(p_context) - length(v_last) - 1, 2) <> E'"\n' THEN
        RETURN NULL;
    END IF;
    v_stmt := substr(p_context, length(v_head) + 1,
        length(p_context) - length(v_head) - length(v_last) - 2);
    v_src := ltrim(array_to_string(
        (string_to_array(v_src, E'\n'))[v_m[3]::integer:], E'\n'), E' \t');
    -- what follows the statement, read in a window of 300 characters (a
    -- regex over the whole rest of the source cost 0.05 ms): a longer gap
    -- before ";" or INTO refuses, never admits
    IF v_stmt = '' OR NOT starts_with(v_src, v_stmt)
        OR substr(v_src, length(v_stmt) + 1, 300) !~* '^\s*(;|INTO\s)' THEN
        RETURN NULL;
    END IF;
    RETURN v_m[1];
END;
$$;

REVOKE ALL ON FUNCTION transition_api_caller(text) FROM PUBLIC;

CREATE FUNCTION verification_attempt_insert_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_context text;
BEGIN
    IF NEW."verificationJobId" IS NULL AND EXISTS (
        SELECT 1 FROM public."VerificationLog" AS vl
        WHERE
            vl."id" = NEW."id"
            AND vl."sessionId" = NEW."sessionId"
            AND vl."commitSha" = NEW."commitSha"
    ) THEN
        RETURN NEW;
    END IF;
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    IF NEW."verificationJobId" IS NOT NULL
        AND (
            public.transition_api_caller(v_context) = 'complete_verification_job'
            -- a second attempt of the job: the unique key answers (23505)
            OR EXISTS (
                SELECT 1 FROM public."VerificationAttempt" AS o
                WHERE o."verificationJobId" = NEW."verificationJobId"
            )
        )
        AND EXISTS (
        SELECT 1 FROM public."VerificationJob" AS j
        WHERE
            j."id" = NEW."verificationJobId"
            AND j."sessionId" = NEW."sessionId"
            AND j."commitSha" = NEW."commitSha"
            AND (
                NEW."result" OPERATOR(pg_catalog.=) 'PASS'
                AND j."status" OPERATOR(pg_catalog.=) 'PASSED'
                OR NEW."result" OPERATOR(pg_catalog.=) 'FAIL'
                AND j."status" OPERATOR(pg_catalog.=) 'FAILED'
            )
    ) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION
        'VerificationAttempt: INSERT of % (job %, result %) refused: attempts are written only by complete_verification_job()',
        NEW."id", NEW."verificationJobId", NEW."result"
        USING ERRCODE = 'FQ001';
END;
$$;

REVOKE ALL ON FUNCTION verification_attempt_insert_guard() FROM PUBLIC;

CREATE FUNCTION verification_log_frozen()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION
        'VerificationLog is frozen: INSERT of row % refused; verification results are VerificationAttempt rows',
        NEW."id"
        USING ERRCODE = 'FA001';
END;
$$;

REVOKE ALL ON FUNCTION verification_log_frozen() FROM PUBLIC;

CREATE TRIGGER verificationlog_frozen
BEFORE INSERT ON "VerificationLog"
FOR EACH ROW EXECUTE FUNCTION verification_log_frozen();

ALTER TABLE "VerificationLog"
ENABLE ALWAYS TRIGGER verificationlog_frozen;

CREATE TRIGGER verificationattempt_append_only
BEFORE UPDATE OR DELETE ON "VerificationAttempt"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER verificationattempt_no_truncate
BEFORE TRUNCATE ON "VerificationAttempt"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER verificationattempt_insert_guard
BEFORE INSERT ON "VerificationAttempt"
FOR EACH ROW EXECUTE FUNCTION verification_attempt_insert_guard();

ALTER TABLE "VerificationAttempt"
ENABLE ALWAYS TRIGGER verificationattempt_append_only,
ENABLE ALWAYS TRIGGER verificationattempt_no_truncate,
ENABLE ALWAYS TRIGGER verificationattempt_insert_guard;

CREATE OR REPLACE FUNCTION enforce_lab_session_status_transition()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_old_terminal boolean;
    v_new_terminal boolean
        := NEW."status" OPERATOR(pg_catalog.=) ANY ('{VERIFIED_PASS,FAILED}');
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW."status" OPERATOR(pg_catalog.<>) 'IN_PROGRESS'
            OR NEW."completedAt" IS NOT NULL THEN
            RAISE EXCEPTION
                'LabSession %: INSERT with status % and completedAt % refused: a session starts IN_PROGRESS with no completedAt',
                NEW."id", NEW."status", NEW."completedAt"
                USING ERRCODE = 'FL001';
        END IF;
        RETURN NEW;
    END IF;

    v_old_terminal
        := OLD."status" OPERATOR(pg_catalog.=) ANY ('{VERIFIED_PASS,FAILED}');

    IF NEW."labId" <> OLD."labId"
        OR NEW."labVersionId" IS DISTINCT FROM OLD."labVersionId"
        AND OLD."labVersionId" IS NOT NULL THEN
        RAISE EXCEPTION
            'LabSession %: UPDATE of labId/labVersionId refused (% / % -> % / %)',
            OLD."id", OLD."labId", OLD."labVersionId",
            NEW."labId", NEW."labVersionId"
            USING ERRCODE = 'FA002';
    END IF;

    IF NEW."status" OPERATOR(pg_catalog.=) OLD."status" THEN
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
            OLD."status" OPERATOR(pg_catalog.=) ANY ('{IN_PROGRESS,STUCK}')
            AND NEW."status" OPERATOR(pg_catalog.<>) OLD."status"
            OR OLD."status" OPERATOR(pg_catalog.=) 'DEFERRED'
            AND NEW."status" OPERATOR(pg_catalog.=) ANY ('{IN_PROGRESS,FAILED}')
        ) THEN
        RAISE EXCEPTION 'LabSession %: illegal status transition % -> %',
            OLD."id", OLD."status", NEW."status"
            USING ERRCODE = 'FL001';
    END IF;

    IF NEW."status" OPERATOR(pg_catalog.=) 'VERIFIED_PASS' AND NOT EXISTS (
        SELECT 1 FROM public."VerificationAttempt" AS a
        WHERE
            a."sessionId" OPERATOR(pg_catalog.=) NEW."id"
            AND a."result" OPERATOR(pg_catalog.=) 'PASS'
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
SET search_path = pg_catalog, pg_temp
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

CREATE FUNCTION guard_lab_session_identity()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- what a terminal session may still change; everything else is frozen
    v_thawed text[] := ARRAY[
        'previewUrl', 'lastActivityAt', 'status', 'completedAt', 'labVersionId'
    ];
    v_old jsonb;
    v_new jsonb;
    v_frozen text[] := ARRAY['id', 'userId', 'labId', 'userForkUrl', 'startedAt'];
    v_why text := 'a session''s identity never changes';
    v_col text;
BEGIN
    -- Nothing frozen changed: every column compared as its JSON value, as the
    -- search below compares it; the whole rows are built as JSON only for a
    -- terminal session (the V0008 backfill updates every session: 31 us a
    -- row when both rows were always built).
    IF to_jsonb(NEW."id") IS NOT DISTINCT FROM to_jsonb(OLD."id")
        AND to_jsonb(NEW."userId") IS NOT DISTINCT FROM to_jsonb(OLD."userId")
        AND to_jsonb(NEW."labId") IS NOT DISTINCT FROM to_jsonb(OLD."labId")
        AND to_jsonb(NEW."userForkUrl")
        IS NOT DISTINCT FROM to_jsonb(OLD."userForkUrl")
        AND to_jsonb(NEW."startedAt")
        IS NOT DISTINCT FROM to_jsonb(OLD."startedAt")
        AND (
            OLD."labVersionId" IS NULL
            OR to_jsonb(NEW."labVersionId")
            IS NOT DISTINCT FROM to_jsonb(OLD."labVersionId")
        )
        AND (
            NOT OLD."status" OPERATOR(pg_catalog.=) ANY ('{VERIFIED_PASS,FAILED}')
            OR to_jsonb(NEW) - v_thawed IS NOT DISTINCT FROM to_jsonb(OLD) - v_thawed
        ) THEN
        RETURN NEW;
    END IF;
    -- something frozen changed: find the first such column and name it
    v_old := to_jsonb(OLD);
    v_new := to_jsonb(NEW);
    IF OLD."labVersionId" IS NOT NULL THEN
        v_frozen := v_frozen || 'labVersionId'::text;
    END IF;
    IF OLD."status" OPERATOR(pg_catalog.=) ANY ('{VERIFIED_PASS,FAILED}') THEN
        v_why := format('the session is %s (terminal)', OLD."status");
        v_frozen := v_frozen || ARRAY(
            SELECT k.key FROM jsonb_object_keys(v_old) AS k (key)
            WHERE NOT k.key = ANY (v_thawed)
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
