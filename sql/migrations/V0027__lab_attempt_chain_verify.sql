-- V0027__lab_attempt_chain_verify: recompute and check the LabAttempt hash chains
--
-- What: verify_lab_attempt_chain(p_session_id uuid DEFAULT NULL) returns one row
--   per problem found (no rows = every chain intact), for one session or all:
--     session_id, chain_seq, lab_attempt_id, problem, detail
--   problem is one of
--     'edited'    the row's content no longer hashes to its rowHash, or its
--                 predecessor was rewritten (prevHash matches no row of the
--                 session), or the row differs from the PUSH_RECORDED anchor
--     'missing'   a gap in chainSeq (first row not 1, or seq jumps), or a row
--                 named by a PUSH_RECORDED AuditLog anchor no longer exists
--                 (this catches deletion of the newest rows, which a chain alone
--                 cannot see)
--     'reordered' the row's prevHash is the rowHash of another row of the
--                 session than its chainSeq predecessor (rows swapped/moved)
--   Anchors: record_push writes each created row's id, chainSeq and rowHash into
--   the metadata of its PUSH_RECORDED AuditLog entry (AuditLog is append-only
--   too), so rewriting the ledger undetectably also means rewriting AuditLog.
--   Export the anchors (or the latest rowHash per session) off-database for
--   protection against a superuser who rewrites both.
-- Why: CONTRACT section 4 (tamper evidence); used by the tests and by
--   `harness verify`.
-- Locks: read-only (ACCESS SHARE); one scan of "LabAttempt" (of one session when
--   p_session_id is given) and of the PUSH_RECORDED rows of "AuditLog".
-- Rollback: drops the function.

CREATE FUNCTION verify_lab_attempt_chain(p_session_id uuid DEFAULT NULL)
RETURNS TABLE (
    session_id uuid,
    chain_seq bigint,
    lab_attempt_id uuid,
    problem text,
    detail text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH r AS (
        SELECT
            a."sessionId",
            a."chainSeq",
            a."id",
            a."prevHash",
            a."rowHash",
            lab_attempt_row_hash(a) AS calc,
            lag(a."chainSeq") OVER w AS prev_seq,
            lag(a."rowHash") OVER w AS prev_row_hash
        FROM public."LabAttempt" AS a
        WHERE p_session_id IS NULL OR a."sessionId" = p_session_id
        WINDOW w AS (PARTITION BY a."sessionId" ORDER BY a."chainSeq")
    ),

    problems AS (
        SELECT
            r."sessionId", r."chainSeq", r."id", 'edited' AS problem,
            'content does not hash to rowHash' AS detail
        FROM r
        WHERE r.calc IS DISTINCT FROM r."rowHash"
        UNION ALL
        SELECT
            r."sessionId", r."chainSeq", r."id", 'missing',
            format('chainSeq %s follows %s', r."chainSeq",
                coalesce(r.prev_seq::text, 'the start of the chain'))
        FROM r
        WHERE r."chainSeq" <> coalesce(r.prev_seq, 0) + 1
        UNION ALL
        SELECT
            r."sessionId", r."chainSeq", r."id",
            CASE WHEN EXISTS (
                SELECT 1 FROM public."LabAttempt" AS o
                WHERE
                    o."sessionId" = r."sessionId"
                    AND o."rowHash" = r."prevHash"
            ) OR r."prevHash" = decode(repeat('00', 32), 'hex')
                THEN 'reordered'
            ELSE 'edited'
            END,
            'prevHash does not link to the previous row'
        FROM r
        WHERE
            r."chainSeq" = coalesce(r.prev_seq, 0) + 1
            AND r."prevHash" IS DISTINCT FROM coalesce(
                r.prev_row_hash, decode(repeat('00', 32), 'hex')
            )
        UNION ALL
        SELECT
            (al."metadata" ->> 'sessionId')::uuid,
            (e.v ->> 'chainSeq')::bigint,
            (e.v ->> 'id')::uuid,
            CASE WHEN a."id" IS NULL THEN 'missing' ELSE 'edited' END,
            format('differs from the PUSH_RECORDED anchor in AuditLog %s', al."id")
        FROM public."AuditLog" AS al
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(al."metadata" -> 'attempts') = 'array'
                THEN al."metadata" -> 'attempts'
                ELSE '[]'::jsonb
            END
        ) AS e (v)
        LEFT JOIN public."LabAttempt" AS a ON a."id"::text = e.v ->> 'id'
        WHERE
            al."action" = 'PUSH_RECORDED'
            AND al."actorId" = 'github-webhook'
            AND al."metadata" ->> 'sessionId' ~ '^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$'
            AND e.v ->> 'id' ~ '^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$'
            AND e.v ->> 'chainSeq' ~ '^[0-9]{1,18}$'
            AND (p_session_id IS NULL
                OR al."metadata" ->> 'sessionId' = p_session_id::text)
            AND (
                a."id" IS NULL
                OR encode(a."rowHash", 'hex') IS DISTINCT FROM e.v ->> 'rowHash'
                OR a."chainSeq"::text IS DISTINCT FROM e.v ->> 'chainSeq'
            )
    )

    SELECT DISTINCT ON (p."sessionId", p."chainSeq", p."id", p.problem)
        p."sessionId", p."chainSeq", p."id", p.problem, p.detail
    FROM problems AS p
    ORDER BY p."sessionId", p."chainSeq", p."id", p.problem
$$;

COMMENT ON FUNCTION verify_lab_attempt_chain(uuid) IS
'Rows of the LabAttempt hash chains that are edited, missing or reordered; no rows = intact (V0027).';

REVOKE ALL ON FUNCTION verify_lab_attempt_chain(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION verify_lab_attempt_chain(uuid)
TO forgea_readonly, forgea_worker;
