-- V0020__ledger_checkpoint: "LedgerCheckpoint", the in-database record of checkpoints
--
-- What: "LedgerCheckpoint": one row per `harness checkpoint` recorded (its
--   root digest, the number of sessions and rows it covers, when and by
--   whom), so a later checkpoint can prove it extends the earlier one. The
--   checkpoint document itself is kept outside the database. From document
--   format v2 the root also commits to every verification attempt, finished
--   job and finished session (harness/ledger_results.py, docs/security.md):
--   root = SHA-256(0x02 || heads root || resultsRoot), and "resultsRoot"
--   records the results' own root (NULL: a ledger-only v1 document).
-- Why: CONTRACT section 8 (checkpoint, verify --checkpoint).
-- Transaction: yes.
-- Locks: new table only. At 1M: under 0.1 s.
-- Pre-conditions: none.
-- Rollback: refuses (FM002) while checkpoints are recorded unless
--   forgea.rollback_preserve is on, which archives them first; drops the
--   table.

CREATE TABLE "LedgerCheckpoint" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "root" TEXT NOT NULL,
    "previousRoot" TEXT,
    "sessionCount" BIGINT NOT NULL,
    "rowCount" BIGINT NOT NULL,
    "takenAt" TIMESTAMP(3) NOT NULL DEFAULT timezone('UTC', now()),
    "takenBy" TEXT NOT NULL DEFAULT current_user,
    "resultsRoot" TEXT,
    CONSTRAINT "LedgerCheckpoint_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "LedgerCheckpoint_root_check"
    CHECK ("root" ~ '^[0-9a-f]{64}$'),
    CONSTRAINT "LedgerCheckpoint_previousRoot_check"
    CHECK ("previousRoot" ~ '^[0-9a-f]{64}$'),
    CONSTRAINT "LedgerCheckpoint_resultsRoot_check"
    CHECK ("resultsRoot" ~ '^[0-9a-f]{64}$'),
    CONSTRAINT "LedgerCheckpoint_counts_check"
    CHECK ("sessionCount" >= 0 AND "rowCount" >= "sessionCount")
);

CREATE INDEX "LedgerCheckpoint_takenAt_idx"
ON "LedgerCheckpoint" ("takenAt");

SELECT forgea_archive_restore('"LedgerCheckpoint"', 'V0020');

GRANT SELECT ON "LedgerCheckpoint" TO forgea_readonly;
