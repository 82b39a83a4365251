-- V0026__lab_attempt_guards: append-only guards and the per-session hash chain
--
-- What:
--   labattempt_append_only / githubpushdelivery_append_only (BEFORE UPDATE OR
--   DELETE, row) and labattempt_no_truncate / githubpushdelivery_no_truncate
--   (BEFORE TRUNCATE, statement) -> forbid_ledger_mutation() (FA001), for every
--   role including the owner.
--   labattempt_chain_hash (BEFORE INSERT, row) -> lab_attempt_chain_hash():
--   takes the per-session transaction advisory lock lab_attempt_session_lock()
--   (pg_advisory_xact_lock(19521, <first 32 bits of sessionId>): pushes to one
--   session queue up, pushes to different sessions do not wait on each other),
--   then sets, whatever the caller supplied:
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
--         (exactly three fractional digits)
--     F16 the literal  end
--   chainSeq is not hashed: the order of a session's chain is fixed by the
--   prevHash links (chainSeq is a dense index that makes reordering visible).
--   Example: the empty list encodes as "1:0,", the author login NULL as "-,".
--
-- Why: CONTRACT section 4 (tamper evidence: any edit or deletion is detectable,
--   even by a superuser with triggers disabled; see verify_lab_attempt_chain()).
-- Locks: CREATE TRIGGER: SHARE ROW EXCLUSIVE on the two new tables, an instant.
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
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_advisory_xact_lock(
        19521,
        ('x' || left(replace(p_session_id::text, '-', ''), 8))::bit(32)::integer
    )
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
