-- V0018__push_ledger_and_job_queue_guards: the append-only ledger, its hash chain, the job state machine
--
-- What:
--   labattempt_append_only / githubpushdelivery_append_only (BEFORE UPDATE OR
--   DELETE, row) and labattempt_no_truncate / githubpushdelivery_no_truncate
--   (BEFORE TRUNCATE, statement) -> forbid_ledger_mutation() (FA001), for every
--   role including the owner.
--   labattempt_chain_hash (BEFORE INSERT, row) -> lab_attempt_chain_hash():
--   serialises the session through lab_attempt_session_lock(), a row lock on
--   the session (SELECT ... FOR NO KEY UPDATE; re-entrant in a transaction;
--   pushes to one session queue up, pushes to different sessions do not wait on
--   each other; a role that can only read cannot take it, unlike an advisory
--   lock any login could hold), then sets, whatever the caller supplied:
--     chainSeq = previous chainSeq of the session + 1 (1 for the first row)
--     prevHash = previous row's rowHash (genesis: 32 zero bytes)
--     rowHash  = lab_attempt_row_hash(NEW)
--   createdAt defaults to the UTC time of the transaction. UNIQUE (sessionId,
--   chainSeq) backs the lock: a caller in REPEATABLE READ/SERIALIZABLE whose
--   snapshot misses a concurrent row gets 23505 instead of a forked chain.
--   All triggers ENABLE ALWAYS (they fire under session_replication_role =
--   replica too). A restore with pg_dump must use --disable-triggers (superuser)
--   and then run verify_lab_attempt_chain(); otherwise rows would be re-chained.
--
-- Canonical byte layout (version 1) hashed into rowHash, for auditors:
--   rowHash = SHA-256( UTF-8 bytes of F1 || F2 || ... || F16 ), where every field
--   is a netstring  <decimal byte length of the UTF-8 value>:<value>,  and a NULL
--   is the two bytes  -,  (a netstring always starts with a digit, so the
--   encoding is unambiguous). Fields in order:
--     F1  the literal  forgea.LabAttempt.v1
--     F2  prevHash as 64 lowercase hex digits (genesis: 64 zeros)
--     F3  id, canonical lowercase uuid text (8-4-4-4-12)
--     F4  sessionId, same form
--     F5  commitSha      F6  deliveryId      F7  branch
--     F8  authorName     F9  authorEmail (NULL -> -,)   F10 authorLogin (NULL -> -,)
--     F11 changedFiles.added, F12 .modified, F13 .removed: each list is the
--         netstring of its element count in decimal followed by one netstring
--         per path, in array order (empty list:  1:0, )
--     F14 pushedAt and F15 createdAt: UTC, 'YYYY-MM-DDTHH:MM:SS.mmmZ'
--         (exactly four year digits, three fractional digits; the columns are
--         timestamp(3) without time zone, so no rounding and no TimeZone)
--     F16 the literal  end
--   Injective over the values the columns admit (the CHECKs of V0017): the
--   layout spells a BC year like the AD one and 'infinity' like '-infinity'
--   (both NULL), so the timestamps are held to 0001-01-01 .. 9999-12-31
--   23:59:59.999; changedFiles to exactly the three keys, each an array of
--   <= 3000 non-empty strings (a number 1 and a string "1", a JSON null and a
--   missing key would otherwise collide; jsonb keeps one of duplicate keys);
--   prevHash to 32 bytes. Text is hashed as its UTF-8 bytes, unnormalised
--   (two spellings of one character are two values, with two encodings);
--   NUL cannot be stored; NULL (-,) differs from '' (0:,). `harness verify`
--   (harness/ledger.py) also refuses a stored row outside that domain (a
--   superuser can drop a CHECK), as an edited row.
--   chainSeq is not hashed: the order of a session's chain is fixed by the
--   prevHash links (chainSeq is a dense index that makes reordering visible).
--   Example: the empty list encodes as "1:0,", the author login NULL as "-,".
--
--   * verificationjob_transition_guard (BEFORE INSERT OR UPDATE OR DELETE on
--     "VerificationJob", ALWAYS), function verification_job_transition_guard():
--       INSERT  only as a fresh QUEUED job (no runs, lease, result or times) on
--               the session's current version                      (FQ001)
--       DELETE  never                                              (FA001)
--       id, labAttemptId, sessionId, commitSha, labVersionId and createdAt
--               never change                                       (FA002)
--       moves   QUEUED -> RUNNING          (one more run, a lease)
--               QUEUED -> RUNNING          inside claim_verification_job()
--               RUNNING -> PASSED | FAILED | ERROR   inside
--                          complete_verification_job() (after it checked the
--                          caller holds the lease and its token), before the
--                          lease expires
--               RUNNING -> ERROR           (lease expired after the 3rd run)
--               RUNNING -> QUEUED          (lease expired, runs remain)
--                          both inside requeue_expired_verification_jobs()
--               terminal -> nothing; anything else                 (FQ001)
--     "inside" is read from the server's call stack (GET DIAGNOSTICS
--     PG_CONTEXT), never from anything a session can set: see
--     transition_api_caller() (V0007) and docs/security.md. A direct UPDATE
--     that would make a session's second RUNNING job is left to the unique
--     index (23505).
--   * verificationjob_no_truncate: TRUNCATE refused (FA001), ALWAYS.
--   Trust boundary, stated plainly: only the owner can write these tables at all
--   (GRANTs), and the API functions check who holds the lease. A plain UPDATE by
--   the owner is refused, whatever it sets; an owner who replaces or imitates
--   an API function (a definition change) or disables the triggers can forge
--   anything, as a table owner always can in PostgreSQL. The owner's credentials belong to the DBAs, and `harness
--   verify` re-checks every invariant.
--
--   auditlog_webhook_guard (BEFORE INSERT on "AuditLog", ALWAYS), function
--   audit_log_webhook_guard(): an AuditLog row whose action is one of the
--   push ledger's (PUSH_RECORDED, PUSH_DUPLICATE_DELIVERY, PUSH_REJECTED), by
--   whatever actorId, may be inserted only by the owner of "AuditLog", which
--   is who record_push (SECURITY DEFINER) runs as; anyone else gets 42501,
--   naming the action. Every other audit row is unaffected, including the
--   rows the app's current webhook route writes with actorId
--   'github-webhook' (LAB_VERIFY_ATTEMPT, LAB_STATUS_TRANSITION).
-- Why: CONTRACT section 4 (tamper evidence; job moves; audit).
-- Transaction: yes.
-- Locks: CREATE TRIGGER takes SHARE ROW EXCLUSIVE for an instant on the new
--   tables and on "AuditLog" (blocks its writes for an instant, not reads).
-- Pre-conditions: none.
-- Rollback: drops the triggers and functions. No data involved.

CREATE FUNCTION lab_attempt_row_hash(r public."LabAttempt")
RETURNS bytea
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_fields text[];
    v_list jsonb;
    v_buf text := '';
    f text;
BEGIN
    -- One PL/pgSQL pass over the fields (the layout is in the header):
    -- about 45 us per row, against 215 us for a netstring SQL function
    -- called once per field.
    -- F1 .. F10
    v_fields := ARRAY[
        'forgea.LabAttempt.v1', encode(r."prevHash", 'hex'), r."id"::text,
        r."sessionId"::text, r."commitSha", r."deliveryId", r."branch",
        r."authorName", r."authorEmail", r."authorLogin"
    ];
    -- F11 .. F13: the element count, then each path in array order
    FOREACH f IN ARRAY ARRAY['added', 'modified', 'removed'] LOOP
        v_list := r."changedFiles" -> f;
        v_fields := v_fields || jsonb_array_length(v_list)::text;
        FOR i IN 0 .. coalesce(jsonb_array_length(v_list), 0) - 1 LOOP
            v_fields := v_fields || (v_list ->> i);
        END LOOP;
    END LOOP;
    -- F14 .. F16
    v_fields := v_fields || ARRAY[
        to_char(r."pushedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        to_char(r."createdAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'end'
    ];
    -- each field as a netstring; NULL as "-,"
    FOREACH f IN ARRAY v_fields LOOP
        v_buf := v_buf || CASE
            WHEN f IS NULL THEN '-,'
            ELSE octet_length(convert_to(f, 'UTF8'))::text || ':' || f || ','
        END;
    END LOOP;
    RETURN sha256(convert_to(v_buf, 'UTF8'));
END;
$$;

REVOKE ALL ON FUNCTION lab_attempt_row_hash(public."LabAttempt") FROM PUBLIC;

GRANT EXECUTE ON FUNCTION lab_attempt_row_hash(public."LabAttempt")
TO forgea_readonly, forgea_worker;

CREATE FUNCTION lab_attempt_session_lock(p_session_id uuid)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- a row lock only writers can take: FOR NO KEY UPDATE needs the UPDATE
    -- privilege, which no role but the owner and forgea_app (status and
    -- lastActivityAt) holds; it leaves FOR KEY SHARE (foreign key checks of
    -- rows that reference the session) free
    PERFORM 1 FROM public."LabSession" AS s
    WHERE s."id" = p_session_id
    FOR NO KEY UPDATE;
END;
$$;

REVOKE ALL ON FUNCTION lab_attempt_session_lock(uuid) FROM PUBLIC;

CREATE FUNCTION lab_attempt_chain_hash()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_seq bigint;
    v_prev bytea;
BEGIN
    PERFORM lab_attempt_session_lock(NEW."sessionId");
    SELECT a."chainSeq", a."rowHash" INTO v_seq, v_prev
    FROM public."LabAttempt" AS a
    WHERE a."sessionId" = NEW."sessionId"
    ORDER BY a."chainSeq" DESC
    LIMIT 1;
    NEW."createdAt" := coalesce(NEW."createdAt", timezone('UTC', now()));
    NEW."chainSeq" := coalesce(v_seq, 0) + 1;
    NEW."prevHash" := coalesce(v_prev, decode(repeat('00', 32), 'hex'));
    NEW."rowHash" := lab_attempt_row_hash(NEW);
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION lab_attempt_chain_hash() FROM PUBLIC;

CREATE TRIGGER labattempt_chain_hash
BEFORE INSERT ON "LabAttempt"
FOR EACH ROW EXECUTE FUNCTION lab_attempt_chain_hash();

CREATE TRIGGER labattempt_append_only
BEFORE UPDATE OR DELETE ON "LabAttempt"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER labattempt_no_truncate
BEFORE TRUNCATE ON "LabAttempt"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER githubpushdelivery_append_only
BEFORE UPDATE OR DELETE ON "GitHubPushDelivery"
FOR EACH ROW EXECUTE FUNCTION forbid_ledger_mutation();

CREATE TRIGGER githubpushdelivery_no_truncate
BEFORE TRUNCATE ON "GitHubPushDelivery"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

ALTER TABLE "LabAttempt"
ENABLE ALWAYS TRIGGER labattempt_chain_hash,
ENABLE ALWAYS TRIGGER labattempt_append_only,
ENABLE ALWAYS TRIGGER labattempt_no_truncate;

ALTER TABLE "GitHubPushDelivery"
ENABLE ALWAYS TRIGGER githubpushdelivery_append_only,
ENABLE ALWAYS TRIGGER githubpushdelivery_no_truncate;

CREATE FUNCTION verification_job_transition_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_context text;
    v_api text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'VerificationJob is append-only: DELETE of job % refused',
            OLD."id"
            USING ERRCODE = 'FA001';
    END IF;

    IF TG_OP = 'INSERT' THEN
        IF NEW."status" <> 'QUEUED' OR NEW."runCount" <> 0
            OR NEW."leaseOwner" IS NOT NULL OR NEW."leaseExpiresAt" IS NOT NULL
            OR NEW."startedAt" IS NOT NULL OR NEW."completedAt" IS NOT NULL
            OR NEW."exitCode" IS NOT NULL OR NEW."errorMessage" IS NOT NULL
            OR NEW."labVersionId" IS DISTINCT FROM (
                SELECT s."labVersionId" FROM public."LabSession" AS s
                WHERE s."id" = NEW."sessionId"
            ) THEN
            RAISE EXCEPTION
                'VerificationJob: INSERT of job % as % refused: a job starts QUEUED, unrun, on its session''s version',
                NEW."id", NEW."status"
                USING ERRCODE = 'FQ001';
        END IF;
        RETURN NEW;
    END IF;

    IF (NEW."id", NEW."labAttemptId", NEW."sessionId", NEW."commitSha",
        NEW."labVersionId", NEW."createdAt")
        IS DISTINCT FROM
        (OLD."id", OLD."labAttemptId", OLD."sessionId", OLD."commitSha",
        OLD."labVersionId", OLD."createdAt") THEN
        RAISE EXCEPTION
            'VerificationJob %: UPDATE of id, labAttemptId, sessionId, commitSha, labVersionId or createdAt refused',
            OLD."id"
            USING ERRCODE = 'FA002';
    END IF;

    -- who moves the job: the server's own call stack, never a setting
    GET DIAGNOSTICS v_context = PG_CONTEXT;
    v_api := public.transition_api_caller(v_context);
    IF OLD."status" = 'QUEUED' AND NEW."status" = 'RUNNING'
        AND NEW."runCount" = OLD."runCount" + 1
        AND (
            v_api = 'claim_verification_job'
            -- a second RUNNING job of the session: the unique index
            -- answers (23505), as it always has
            OR EXISTS (
                SELECT 1 FROM public."VerificationJob" AS r
                WHERE r."sessionId" = OLD."sessionId" AND r."status" = 'RUNNING'
            )
        ) THEN
        RETURN NEW;
    ELSIF OLD."status" = 'RUNNING'
        AND NEW."status" IN ('PASSED', 'FAILED', 'ERROR')
        AND NEW."leaseOwner" IS NOT DISTINCT FROM OLD."leaseOwner"
        AND NEW."runCount" = OLD."runCount"
        AND (
            v_api = 'complete_verification_job'
            AND OLD."leaseExpiresAt" >= timezone('UTC', clock_timestamp())
            OR v_api = 'requeue_expired_verification_jobs'
            AND NEW."status" = 'ERROR' AND OLD."runCount" >= 3
            AND OLD."leaseExpiresAt" < timezone('UTC', clock_timestamp())
        ) THEN
        RETURN NEW;
    ELSIF OLD."status" = 'RUNNING' AND NEW."status" = 'QUEUED'
        AND v_api = 'requeue_expired_verification_jobs'
        AND OLD."leaseExpiresAt" < timezone('UTC', clock_timestamp())
        AND OLD."runCount" < 3 AND NEW."runCount" = OLD."runCount" THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION
        'VerificationJob %: illegal transition % -> % (runCount % -> %)',
        OLD."id", OLD."status", NEW."status", OLD."runCount", NEW."runCount"
        USING ERRCODE = 'FQ001';
END;
$$;

REVOKE ALL ON FUNCTION verification_job_transition_guard() FROM PUBLIC;

CREATE TRIGGER verificationjob_transition_guard
BEFORE INSERT OR UPDATE OR DELETE ON "VerificationJob"
FOR EACH ROW EXECUTE FUNCTION verification_job_transition_guard();

CREATE TRIGGER verificationjob_no_truncate
BEFORE TRUNCATE ON "VerificationJob"
FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_mutation();

ALTER TABLE "VerificationJob"
ENABLE ALWAYS TRIGGER verificationjob_transition_guard,
ENABLE ALWAYS TRIGGER verificationjob_no_truncate;

CREATE FUNCTION audit_log_webhook_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW."action" IN (
        'PUSH_RECORDED', 'PUSH_DUPLICATE_DELIVERY', 'PUSH_REJECTED'
    ) AND current_user <> (
        SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c
        WHERE c.oid = TG_RELID
    ) THEN
        RAISE EXCEPTION
            'AuditLog: INSERT of % by % refused: push ledger audit rows are written only by record_push()',
            quote_literal(left(NEW."action", 60)), current_user
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION audit_log_webhook_guard() FROM PUBLIC;

CREATE TRIGGER auditlog_webhook_guard
BEFORE INSERT ON "AuditLog"
FOR EACH ROW EXECUTE FUNCTION audit_log_webhook_guard();

ALTER TABLE "AuditLog"
ENABLE ALWAYS TRIGGER auditlog_webhook_guard;
