-- V0070__ledger_checkpoint: "LedgerCheckpoint", the record of ledger checkpoints
--
-- What: table "LedgerCheckpoint", one row per `harness checkpoint` run: the
--   Merkle root of every session's newest (chainSeq, rowHash) of the push
--   ledger, the root of the checkpoint it extends, the counts, when and by whom.
--   forgea_readonly may read it; only the owner (who runs the harness) writes.
-- Why: a checkpoint's JSON document is kept off the database, where its
--   superuser cannot reach it; this row lets the next checkpoint name the one
--   it extends and lets anyone see when checkpoints were taken. The row is not
--   the evidence (the database could lie about it); the kept document is.
--   After a preserving rollback the archived rows
--   (forgea_archive."LedgerCheckpoint_V0070_<time>") come back exactly.
-- Locks: new table only (the restore reads its archive table).
-- Rollback: refuses (FM002, naming the count and the newest roots) while the
--   table holds rows, unless forgea.rollback_preserve = on: then the table is
--   archived to forgea_archive first.

CREATE TABLE "LedgerCheckpoint" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "root" TEXT NOT NULL,
    "previousRoot" TEXT,
    "sessionCount" BIGINT NOT NULL,
    "rowCount" BIGINT NOT NULL,
    "takenAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    "takenBy" TEXT NOT NULL DEFAULT current_user,
    CONSTRAINT "LedgerCheckpoint_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "LedgerCheckpoint_root_check"
    CHECK ("root" ~ '^[0-9a-f]{64}$'),
    CONSTRAINT "LedgerCheckpoint_previousRoot_check"
    CHECK ("previousRoot" ~ '^[0-9a-f]{64}$'),
    CONSTRAINT "LedgerCheckpoint_counts_check"
    CHECK ("sessionCount" >= 0 AND "rowCount" >= "sessionCount")
);

CREATE INDEX "LedgerCheckpoint_takenAt_idx"
ON "LedgerCheckpoint" ("takenAt");

SELECT forgea_archive_restore('"LedgerCheckpoint"', 'V0070');

GRANT SELECT ON "LedgerCheckpoint" TO forgea_readonly;
