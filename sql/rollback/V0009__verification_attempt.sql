-- Rollback of V0009__verification_attempt
--
-- Safety: rows that are copies of "VerificationLog" rows (same id, session and
--   commit) are rebuilt by V0013 and may be dropped. Any other row (an attempt
--   recorded after the migration) makes the rollback refuse with FM002, naming
--   the ids, unless forgea.rollback_preserve = on. With preservation on, the
--   whole table (legacy copies included, with the result they were given) is
--   copied to forgea_archive first and V0009 restores it on the next apply,
--   before V0013 copies anything.
-- Locks: ACCESS EXCLUSIVE on "VerificationAttempt" while it is dropped.

DO $$
DECLARE
    ids text;
BEGIN
    SELECT string_agg(x."id"::text, ', ')
    INTO ids
    FROM (
        SELECT a."id"
        FROM "VerificationAttempt" AS a
        WHERE NOT EXISTS (
            SELECT 1 FROM "VerificationLog" AS vl
            WHERE
                vl."id" = a."id"
                AND vl."sessionId" = a."sessionId"
                AND vl."commitSha" = a."commitSha"
        )
        ORDER BY a."id"
        LIMIT 20
    ) AS x;
    IF ids IS NOT NULL THEN
        PERFORM forgea_rollback_preserving(
            'V0009__verification_attempt',
            'VerificationAttempt holds attempts that VerificationLog cannot hold',
            'VerificationAttempt ids (first 20): ' || ids
        );
    END IF;
    PERFORM forgea_archive_if_preserving('"VerificationAttempt"', 'V0009');
END;
$$;

DROP TABLE "VerificationAttempt";

DROP TYPE "VerificationResult";
