-- V0009__verification_attempt_copy: copy every VerificationLog row into VerificationAttempt
-- harness: no-transaction
--
-- What: one "VerificationAttempt" per "VerificationLog" row, keeping its id:
--   sessionId and commitSha as they are (a legacy SHA that is not lowercase hex
--   is kept, never rewritten, and reported below); createdAt = verifiedAt;
--   verificationJobId NULL; result derived from the session: VERIFIED_PASS ->
--   PASS, any other status -> FAIL (the legacy table has no result column; a
--   log row of a session that never passed is not a pass). "logs" is an object:
--     {"source": {"table": "VerificationLog", "id": ..., "migration": "V0009"},
--      "prDiff": V, "prDiffFormat": F, "ciOutput": V, "ciOutputFormat": F}
--   where each text is parsed as JSON when it is valid JSONB (F = "json"),
--   else kept as a JSON string (F = "text"). A text too large for a JSON
--   string (over 256 MB) is stored as a reference (F = "reference": byte
--   count and sha256); the original always stays in "VerificationLog", which
--   is never changed.
-- Why: CONTRACT section 4 (B6 tasks 48-53); the app's current client still
--   reads VerificationLog, so it stays, frozen.
-- How: batches of 1000 heap pages (about 5000 rows) in physical order (a TID
--   range scan), COMMIT after each, NOTICE progress in pages. Rows already
--   copied are skipped, so a rerun resumes. A last anti-join proves every
--   VerificationLog row has its attempt, else the file fails (and can be
--   rerun). VerificationLog takes no new rows and no updates (V0003, V0007),
--   so its rows do not move while this runs.
-- Transaction: no (commits per batch; resumable).
-- Locks: ACCESS SHARE on "VerificationLog", ROW EXCLUSIVE on
--   "VerificationAttempt"; nothing the app writes is blocked. At 1M legacy
--   logs: 235-267 s in all (docs/bench-results.md, runs A-D), no lock the app
--   waits on.
-- Pre-conditions: none.
-- Rollback: nothing to undo here (V0006's rollback drops the table after
--   checking that it only holds these copies).

CREATE OR REPLACE FUNCTION public.forgea_legacy_log_value(
    p_text text, OUT value jsonb, OUT format text
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The value and its format as two OUT columns, read through a LATERAL
    -- call: no [value, format] array built and taken apart again per text
    -- (at 100k rows the copy's INSERT 19.0 s -> 14.7 s).
    -- A JSON string longer than jsonb can hold (2^28 - 1 bytes): keep a
    -- reference; the text itself stays in VerificationLog.
    IF octet_length(p_text) > 255 * 1024 * 1024 THEN
        value := jsonb_build_object(
            'bytes', octet_length(p_text),
            'sha256', encode(sha256(convert_to(p_text, 'UTF8')), 'hex')
        );
        format := 'reference';
        RETURN;
    END IF;
    IF current_setting('server_version_num')::integer >= 160000 THEN
        -- PostgreSQL 16+: the json type's validity test only scans the text
        -- (it stops at the first character that cannot start JSON), where
        -- testing as jsonb builds the value and the cast builds it again
        -- (measured with V0006's reordered CHECK: V0009 at 100k rows 37.7 s
        -- -> 35.6 s, medians of two alternated runs each). Valid JSON that
        -- jsonb still refuses (a \u0000 escape) is caught by the block,
        -- a subtransaction only for text that is JSON. This branch is never
        -- planned on 15, where pg_input_is_valid is missing.
        IF pg_input_is_valid(p_text, 'json') THEN
            BEGIN
                value := p_text::jsonb;
                format := 'json';
                RETURN;
            EXCEPTION WHEN others THEN
                NULL;
            END;
        END IF;
    ELSIF ltrim(p_text, E' \t\r\n') ~ '^[-\[{"0-9tfn]' THEN
        -- PostgreSQL 15: a subtransaction per attempt, so only for text that
        -- starts like JSON (diffs and plain logs do not).
        BEGIN
            value := p_text::jsonb;
            format := 'json';
            RETURN;
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END IF;
    value := to_jsonb(p_text);
    format := 'text';
END;
$$;

REVOKE ALL ON FUNCTION public.forgea_legacy_log_value(text) FROM PUBLIC;

CREATE OR REPLACE PROCEDURE public.forgea_copy_verification_log(p_pages integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    v_pages bigint;
    v_from bigint := 0;
    v_rows bigint;
    v_total bigint := 0;
    v_missing bigint;
    v_missing_ids text;
    v_bad bigint;
    v_bad_ids text;
BEGIN
    v_pages := pg_relation_size('public."VerificationLog"')
        / current_setting('block_size')::bigint;
    WHILE v_from < v_pages LOOP
        INSERT INTO public."VerificationAttempt" (
            "id", "sessionId", "commitSha", "result", "logs",
            "verificationJobId", "createdAt"
        )
        SELECT
            vl."id",
            vl."sessionId",
            vl."commitSha",
            CASE
                WHEN (
                    SELECT s."status"::text FROM public."LabSession" AS s
                    WHERE s."id" = vl."sessionId"
                ) = 'VERIFIED_PASS' THEN 'PASS'
                ELSE 'FAIL'
            END::public."VerificationResult",
            jsonb_build_object(
                'source', jsonb_build_object(
                    'table', 'VerificationLog',
                    'id', vl."id",
                    'migration', 'V0009'
                ),
                'prDiff', diff.value,
                'prDiffFormat', diff.format,
                'ciOutput', ci.value,
                'ciOutputFormat', ci.format
            ),
            NULL,
            vl."verifiedAt"
        FROM public."VerificationLog" AS vl
        CROSS JOIN LATERAL public.forgea_legacy_log_value(vl."prDiff") AS diff
        CROSS JOIN LATERAL public.forgea_legacy_log_value(vl."ciOutput") AS ci
        WHERE
            vl.ctid >= format('(%s,0)', v_from)::tid
            AND vl.ctid < format('(%s,0)', v_from + p_pages)::tid
            -- Copied by an earlier run: skipped. A scalar subquery, not
            -- NOT EXISTS, so that it stays one primary-key probe per row
            -- (an anti-join may scan the growing table once per batch).
            AND (
                SELECT a."id" FROM public."VerificationAttempt" AS a
                WHERE a."id" = vl."id"
            ) IS NULL;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_total := v_total + v_rows;
        v_from := v_from + p_pages;
        COMMIT;
        RAISE NOTICE 'V0009 progress: %/% pages', least(v_from, v_pages), v_pages;
    END LOOP;

    SELECT count(*), string_agg(x."id"::text, ', ')
    INTO v_missing, v_missing_ids
    FROM (
        SELECT vl."id" FROM public."VerificationLog" AS vl
        WHERE NOT EXISTS (
            SELECT 1 FROM public."VerificationAttempt" AS a
            WHERE a."id" = vl."id"
        )
        ORDER BY vl."id"
        LIMIT 20
    ) AS x;
    IF v_missing > 0 THEN
        RAISE EXCEPTION
            'V0009: VerificationLog rows without their VerificationAttempt copy after the last batch (first 20): %',
            v_missing_ids
            USING HINT = 'Nothing is lost (VerificationLog is unchanged); apply again to resume.';
    END IF;

    SELECT count(*), string_agg(x."id"::text || '=' || quote_literal(x.sha), ', ')
    INTO v_bad, v_bad_ids
    FROM (
        SELECT vl."id", left(vl."commitSha", 80) AS sha
        FROM public."VerificationLog" AS vl
        WHERE vl."commitSha" !~ '^[0-9a-f]{40}([0-9a-f]{24})?$'
        ORDER BY vl."id"
        LIMIT 20
    ) AS x;
    IF v_bad > 0 THEN
        RAISE NOTICE
            'V0009 legacy rows kept as they are: VerificationLog commitSha not lowercase hex 40/64 (first 20): %',
            v_bad_ids;
    END IF;
    RAISE NOTICE 'V0009 done: % attempts copied', v_total;
END;
$$;

CALL public.forgea_copy_verification_log();

DROP PROCEDURE public.forgea_copy_verification_log(integer);

DROP FUNCTION public.forgea_legacy_log_value(text);
