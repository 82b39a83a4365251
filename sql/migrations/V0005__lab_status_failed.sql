-- V0005__lab_status_failed: add the terminal status FAILED to "LabStatus"
--
-- What: ALTER TYPE "LabStatus" ADD VALUE 'FAILED' (after DEFERRED).
-- Why: CONTRACT section 4: a session can end without a pass. The value cannot be
--   used in the transaction that adds it, so it lives in its own file; every
--   later file (lifecycle v2, constraints) runs in a later transaction.
-- Locks: ALTER TYPE ... ADD VALUE takes a brief lock on the type only; no table
--   is rewritten or scanned.
-- Rollback: PostgreSQL cannot drop an enum label, so the rollback rebuilds the
--   type without it; it refuses (FM002, naming the sessions) while any session is
--   FAILED, because the old schema has no way to say FAILED.

ALTER TYPE "LabStatus" ADD VALUE IF NOT EXISTS 'FAILED' AFTER 'DEFERRED';
