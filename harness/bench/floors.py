"""The floors: what copying the big tables costs with nothing else to do."""

from __future__ import annotations

import time

from .common import _connect

def _floor(dsn: str, vl_columns: str, vl_select: str) -> float:
    """INSERT ... SELECT of LabSession, VerificationLog (as ``vl_select`` into a table of
    ``vl_columns``) and AuditLog into unindexed, unconstrained copies; seconds taken."""
    with _connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("DROP SCHEMA IF EXISTS bench_floor CASCADE")
        conn.execute("CREATE SCHEMA bench_floor")
        conn.execute('CREATE TABLE bench_floor.ls AS SELECT * FROM "LabSession" WITH NO DATA')
        conn.execute(f"CREATE TABLE bench_floor.vl ({vl_columns})")
        conn.execute('CREATE TABLE bench_floor.al AS SELECT * FROM "AuditLog" WITH NO DATA')
        conn.execute("CHECKPOINT")
        t = time.monotonic()
        conn.execute('INSERT INTO bench_floor.ls SELECT * FROM "LabSession"')
        conn.execute(f'INSERT INTO bench_floor.vl SELECT {vl_select} FROM "VerificationLog"')
        conn.execute('INSERT INTO bench_floor.al SELECT * FROM "AuditLog"')
        elapsed = time.monotonic() - t
        conn.execute("DROP SCHEMA bench_floor CASCADE")
        conn.execute("CHECKPOINT")
    return elapsed


def copy_floor(dsn: str) -> float:
    """The three big tables copied as they are (VerificationLog's texts stay text)."""
    return _floor(dsn,
                  '"id" uuid, "sessionId" uuid, "commitSha" text, "prDiff" text, '
                  '"ciOutput" text, "verifiedAt" timestamp(3)',
                  '"id", "sessionId", "commitSha", "prDiff", "ciOutput", "verifiedAt"')


def jsonb_floor(dsn: str) -> float:
    """copy floor + every VerificationLog text rewritten as new jsonb (see the module doc)."""
    return _floor(dsn,
                  '"id" uuid, "sessionId" uuid, "commitSha" text, "logs" jsonb, '
                  '"createdAt" timestamp(3)',
                  '"id", "sessionId", "commitSha", jsonb_build_object('
                  '\'prDiff\', to_jsonb("prDiff"), \'ciOutput\', to_jsonb("ciOutput")), '
                  '"verifiedAt"')


