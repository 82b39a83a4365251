-- Rollback of V0020__ledger_checkpoint
--
-- Safety: the previous schema has no checkpoint record. If "LedgerCheckpoint"
--   holds rows the rollback refuses with FM002 (the count and the 5 newest
--   roots) unless forgea.rollback_preserve = on; then the table is copied to
--   forgea_archive ("LedgerCheckpoint_V0020_<time>") first (V0020 restores it
--   on the next apply). The kept checkpoint documents stay valid either way:
--   they do not depend on this table.
-- Transaction: yes.
-- Locks: ACCESS EXCLUSIVE on "LedgerCheckpoint" while it is dropped.

DO $$
DECLARE
    n bigint := (SELECT count(*) FROM public."LedgerCheckpoint");
    roots text;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    SELECT string_agg(x."root", ', ') INTO roots
    FROM (
        SELECT c."root" FROM public."LedgerCheckpoint" AS c
        ORDER BY c."takenAt" DESC LIMIT 5
    ) AS x;
    IF forgea_rollback_preserving(
        'V0020__ledger_checkpoint',
        format('LedgerCheckpoint holds %s rows', n),
        'newest roots: ' || roots
    ) THEN
        PERFORM forgea_archive_if_preserving('public."LedgerCheckpoint"', 'V0020');
    END IF;
END;
$$;

DROP TABLE "LedgerCheckpoint";
