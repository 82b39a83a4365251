-- V0008__lab_session_backfill: fill LabSession.labVersionId and completedAt
-- harness: no-transaction
--
-- What: every session without a version gets version 1 of its lab (the version
--   V0004 created from the lab's values at migration time); every session that
--   was already terminal (VERIFIED_PASS) gets completedAt = the verifiedAt of
--   its VerificationLog row, else its lastActivityAt (README: "completedAt of
--   legacy sessions").
-- Why: V0010-V0012 make labVersionId NOT NULL and tie completedAt to status.
-- How: a procedure updates batches of 5000 sessions in primary-key order and
--   COMMITs after each batch, so no row lock is held for more than one batch
--   and the app keeps writing; it reports progress with NOTICEs
--   ("V0008 progress: done/total rows", drawn by the harness as a progress
--   bar). It only touches rows that still need a value, so after an
--   interruption a rerun resumes where it stopped. New sessions are filled by
--   labsession_version_default (V0007) as they arrive. The procedure has no
--   SET clause (that would forbid COMMIT); every name in it is
--   schema-qualified instead.
-- Transaction: no (commits per batch; resumable).
-- Locks: ROW EXCLUSIVE on "LabSession"; row locks on one batch of 5000 at a
--   time. At 1M sessions: 38-41 s in all, the application's longest wait on
--   a batch's row lock 0.14 s (docs/bench-results.md, runs C and D).
-- Pre-conditions: none (every lab has a version: V0004).
-- Rollback: nothing to undo (V0006's rollback drops the columns).

CREATE OR REPLACE PROCEDURE public.forgea_backfill_lab_session(
    p_batch integer DEFAULT 5000
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_last uuid := '00000000-0000-0000-0000-000000000000';
    v_next uuid;
    v_rows bigint;
    v_total bigint := 0;
    v_seen bigint := 0;
    v_all bigint;
BEGIN
    SELECT count(*) INTO v_all FROM public."LabSession";
    LOOP
        SELECT b."id" INTO v_next
        FROM (
            SELECT s."id" FROM public."LabSession" AS s
            WHERE s."id" > v_last
            ORDER BY s."id"
            LIMIT p_batch
        ) AS b
        ORDER BY b."id" DESC
        LIMIT 1;
        EXIT WHEN v_next IS NULL;

        UPDATE public."LabSession" AS s
        SET
            "labVersionId" = coalesce(s."labVersionId", v."id"),
            "completedAt" = CASE
                WHEN s."completedAt" IS NULL
                    AND s."status"::text IN ('VERIFIED_PASS', 'FAILED')
                    THEN coalesce(vl."verifiedAt", s."lastActivityAt")
                ELSE s."completedAt"
            END
        FROM public."LabSession" AS src
        LEFT JOIN public."LabVersion" AS v
            ON src."labId" = v."labId" AND v."versionNumber" = 1
        LEFT JOIN public."VerificationLog" AS vl
            ON src."id" = vl."sessionId"
        WHERE
            s."id" = src."id"
            AND src."id" > v_last AND src."id" <= v_next
            AND (
                src."labVersionId" IS NULL
                OR src."completedAt" IS NULL
                AND src."status"::text IN ('VERIFIED_PASS', 'FAILED')
            );
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_total := v_total + v_rows;
        v_last := v_next;
        COMMIT;
        v_seen := least(v_seen + p_batch, v_all);
        RAISE NOTICE 'V0008 progress: %/% rows', v_seen, v_all;
    END LOOP;
    RAISE NOTICE 'V0008 done: % sessions backfilled', v_total;
END;
$$;

CALL public.forgea_backfill_lab_session();

DROP PROCEDURE public.forgea_backfill_lab_session(integer);
