"""``record_push`` against multi-row INSERTs of the very same LabAttempt rows."""

from __future__ import annotations

import time

from .common import COMMITS_PER_PUSH, PUSH_CONNECTIONS, PUSH_SESSIONS_PER_CONN, _commits, \
    _connect, _parallel, make_sessions, push

def bench_record_push(dsn: str, duration: float) -> dict:
    with _connect(dsn) as conn:
        sessions = make_sessions(conn, 0, PUSH_CONNECTIONS * PUSH_SESSIONS_PER_CONN, "rp")
        conn.execute('CREATE SCHEMA IF NOT EXISTS bench')
        conn.execute('DROP TABLE IF EXISTS bench.la_copy')
        conn.execute('CREATE TABLE bench.la_copy (LIKE "LabAttempt")')
    pushes = [0] * PUSH_CONNECTIONS

    def pusher(c):
        mine = sessions[c * PUSH_SESSIONS_PER_CONN:(c + 1) * PUSH_SESSIONS_PER_CONN]
        with _connect(dsn, "bench-push") as conn:
            end = time.monotonic() + duration
            k = 0
            while time.monotonic() < end:
                rows = push(conn, mine[k % len(mine)], _commits(COMMITS_PER_PUSH, k))
                if sum(1 for r in rows if r[2]) != COMMITS_PER_PUSH:
                    raise RuntimeError(f"record_push did not record {COMMITS_PER_PUSH} commits: {rows}")
                pushes[c] += 1
                k += 1

    elapsed = _parallel(PUSH_CONNECTIONS, pusher)
    total_pushes = sum(pushes)
    commits = total_pushes * COMMITS_PER_PUSH
    # the ceiling: the very same rows, 5 per multi-row INSERT, same connections
    cols = ["id", "sessionId", "commitSha", "deliveryId", "branch", "authorName", "authorEmail",
            "authorLogin", "changedFiles", "pushedAt", "createdAt", "chainSeq", "prevHash", "rowHash"]
    collist = ", ".join(f'"{c}"' for c in cols)
    with _connect(dsn) as conn:
        rows = conn.execute(f'SELECT {collist} FROM "LabAttempt" AS a WHERE "sessionId" = ANY(%s) '
                            'ORDER BY "deliveryId", "chainSeq"',
                            ([s["id"] for s in sessions],)).fetchall()
    groups = [rows[i:i + COMMITS_PER_PUSH] for i in range(0, len(rows), COMMITS_PER_PUSH)]
    from psycopg.types.json import Jsonb
    stmt = (f"INSERT INTO bench.la_copy ({collist}) VALUES "
            + ", ".join(["(" + ", ".join(["%s"] * len(cols)) + ")"] * COMMITS_PER_PUSH))

    def inserter(c):
        with _connect(dsn, "bench-insert") as conn:
            for g in groups[c::PUSH_CONNECTIONS]:
                if len(g) != COMMITS_PER_PUSH:
                    continue
                params = []
                for r in g:
                    r = list(r)
                    r[8] = Jsonb(r[8])
                    params.extend(r)
                conn.execute(stmt, params)

    ins_elapsed = _parallel(PUSH_CONNECTIONS, inserter)
    inserted = sum(len(g) for g in groups if len(g) == COMMITS_PER_PUSH)
    rp_cps = commits / elapsed if elapsed else 0.0
    ceil_cps = inserted / ins_elapsed if ins_elapsed else 0.0
    return {
        "record_push_pushes_per_s": total_pushes / elapsed if elapsed else 0.0,
        "record_push_commits_per_s": rp_cps,
        "insert_ceiling_commits_per_s": ceil_cps,
        "record_push_vs_insert_ratio": rp_cps / ceil_cps if ceil_cps else 0.0,
        "record_push_pushes": total_pushes,
    }


