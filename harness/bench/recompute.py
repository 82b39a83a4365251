"""The independent ledger recomputation against the database's own chain check."""

from __future__ import annotations

import time

from .common import _connect

def bench_ledger_recompute(dsn: str, rows: int) -> dict:
    """The independent recomputation (harness.ledger) over ``rows`` ledger rows,
    against the database's own verify_lab_attempt_chain() in the same run.
    ``ledger_recompute_parts``: how many processes shared it (harness.ledger_parts:
    one a core from 100k rows; the database's verifier is one backend).

    The rows go in through the chain trigger (10 commits per existing session,
    one INSERT ... SELECT per 2000 sessions), so they are real chained rows.
    """
    from .. import ledger
    per_session = 10
    with _connect(dsn, "bench-ledger") as conn:
        have = conn.execute('SELECT count(*) FROM "LabAttempt"').fetchone()[0]
        need = max(0, rows - have)
        sessions = conn.execute('SELECT "id" FROM "LabSession" ORDER BY "id" LIMIT %s',
                                (-(-need // per_session),)).fetchall()
        t0 = time.perf_counter()
        # one transaction per 2000 sessions: the chain trigger takes one advisory
        # lock per session, and a transaction holds at most so many
        for i in range(0, len(sessions), 2000):
            conn.execute("""
                INSERT INTO "LabAttempt" ("sessionId", "commitSha", "deliveryId", "branch",
                    "authorName", "authorEmail", "changedFiles", "pushedAt")
                SELECT s, left(encode(sha256(convert_to(s::text || g, 'UTF8')), 'hex'), 40),
                       'bench-ledger-' || s || '-' || g, 'main', 'Bench Author',
                       'bench@example.com',
                       jsonb_build_object('added', jsonb_build_array('src/f' || g || '.ts'),
                                          'modified', '[]'::jsonb, 'removed', '[]'::jsonb),
                       timezone('UTC', now())
                FROM unnest(%s::uuid[]) AS s, generate_series(1, %s) AS g
                ORDER BY s, g""", ([r[0] for r in sessions[i:i + 2000]], per_session))
        fill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sql_rows = len(conn.execute("SELECT * FROM verify_lab_attempt_chain(NULL)").fetchall())
        sql_s = time.perf_counter() - t0
        rec = ledger.recompute(conn)
    if rec.breaks or sql_rows:
        raise RuntimeError(f"bench ledger is broken: {rec.as_dict()['breaks'][:3]}")
    return {
        "ledger_rows": rec.rows,
        "ledger_fill_s": fill_s,
        "ledger_recompute_s": rec.seconds,
        "ledger_recompute_parts": rec.parts,
        "ledger_recompute_rows_per_s": rec.rows_per_s,
        "ledger_sql_verify_s": sql_s,
        "ledger_recompute_vs_sql_verify_ratio": rec.seconds / sql_s if sql_s else None,
    }


