"""``record_push`` against multi-row INSERTs of the very same LabAttempt rows."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from datetime import datetime, timezone

import psycopg

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




# ---- the cost of one push, by size, and where it goes ----------------------------

PUSH_SIZES = (1, 20, 100)

#: the statements of a push's parts, replayed one by one in a rolled-back
#: transaction on a fresh session, each timed by EXPLAIN ANALYZE on the server
_INSERT_ATTEMPTS = """
    INSERT INTO "LabAttempt" ("sessionId", "commitSha", "deliveryId", "branch", "authorName",
        "authorEmail", "authorLogin", "changedFiles", "pushedAt", "chainSeq", "prevHash", "rowHash")
    SELECT %(s)s, e.c ->> 'id', %(d)s, 'main', e.c -> 'author' ->> 'name',
        e.c -> 'author' ->> 'email', e.c -> 'author' ->> 'username',
        jsonb_build_object('added', e.c -> 'added', 'modified', e.c -> 'modified',
                           'removed', e.c -> 'removed'),
        timezone('UTC', now()), 0, '\\x'::bytea, '\\x'::bytea
    FROM jsonb_array_elements(%(c)s::jsonb) WITH ORDINALITY AS e (c, n) ORDER BY e.n"""
_ENQUEUE = """SELECT enqueue_verification_job(
    (SELECT "id" FROM "LabAttempt" WHERE "sessionId" = %(s)s AND "commitSha" = %(h)s))"""
_DELIVERY = """INSERT INTO "GitHubPushDelivery" ("deliveryId", "sessionId", "branch", "headSha",
    "verificationJobId") VALUES (%(d)s, %(s)s, 'main', %(h)s, NULL)"""
_AUDIT = """INSERT INTO "AuditLog" ("id", "userId", "action", "metadata", "actorId")
    VALUES (gen_random_uuid(), NULL, 'PUSH_RECORDED', %(m)s::jsonb, 'github-webhook')"""


def _explain_ms(conn, stmt: str, params: dict) -> tuple[float, dict]:
    """Server execution time of ``stmt`` (ms) and the time of each trigger it fired."""
    plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + stmt, params).fetchone()[0][0]
    return plan["Execution Time"], {t["Trigger Name"]: t["Time"] for t in plan.get("Triggers", [])}


def _push_parts(conn, s: dict, commits: list[dict]) -> dict:
    """Each part of one push of ``commits`` to the fresh session ``s``, rolled back."""
    sha = commits[-1]["id"]
    p = {"s": s["id"], "d": str(uuid.uuid4()), "c": json.dumps(commits), "h": sha}
    with conn.transaction(force_rollback=True):
        t = time.perf_counter()
        try:   # the whole validation, refused by its last check: the head is not a commit
            conn.execute("SELECT * FROM record_push(%s, %s, %s, %s, %s, %s, %s::jsonb)",
                         (p["d"], s["repo_id"], s["url"], "refs/heads/main", "0" * 40,
                          datetime.now(timezone.utc), p["c"]))
        except psycopg.errors.InvalidParameterValue:
            pass
        validation = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    conn.execute("SELECT 1").fetchall()
    round_trip = (time.perf_counter() - t) * 1000
    with conn.transaction(force_rollback=True):
        ins, trig = _explain_ms(conn, _INSERT_ATTEMPTS, p)
        chain = trig.get("labattempt_chain_hash", 0.0)
        job, _ = _explain_ms(conn, _ENQUEUE, p)
        delivery, _ = _explain_ms(conn, _DELIVERY, p)
        p["m"] = json.dumps({"deliveryId": p["d"], "sessionId": str(s["id"]),
                             "attempts": [{"id": str(uuid.uuid4()), "commitSha": c["id"],
                                           "chainSeq": k + 1, "rowHash": "0" * 64}
                                          for k, c in enumerate(commits)]})
        audit, _ = _explain_ms(conn, _AUDIT, p)
    return {"round_trip": round_trip, "validation": validation - round_trip, "chain": chain, "indexes_and_constraints": ins - chain,
            "delivery_row": delivery, "job": job, "audit": audit}


def bench_push_sizes(dsn: str, reps: int) -> dict:
    """The cost of one push of 1, 20 and 100 commits (median of ``reps`` pushes, each to a
    fresh session, one connection, nothing else running) and its parts, each the median of
    the same number of rolled-back replays: round trip (a client-timed ``SELECT 1``: on a
    loaded machine most of a small push), validation (a call refused by its last check,
    client-timed, less the round trip), chain (the chain trigger's time in one INSERT of the push's rows),
    indexes and constraints (the rest of that INSERT), delivery row, job and audit (each
    statement's server time); ``other`` is what the sum leaves of the push (resolution,
    the session lock, the function's own work)."""
    results: dict = {}
    breakdown: dict = {}
    with _connect(dsn, "bench-push-sizes") as conn:
        # spare pairs 1000 on: after the record_push (0..199) and queue (300..699) sessions
        sessions = iter(make_sessions(conn, 1000,
                                      2 * reps * len(PUSH_SIZES) + 2, "ps"))
        for s in (next(sessions), next(sessions)):   # warm the connection's plans
            push(conn, s, _commits(3, 0))
            _push_parts(conn, s, _commits(3, 1))
        for n in PUSH_SIZES:
            totals, parts = [], []
            for r in range(reps):
                commits = _commits(n, r)
                t = time.perf_counter()
                push(conn, next(sessions), commits)
                totals.append((time.perf_counter() - t) * 1000)
                parts.append(_push_parts(conn, next(sessions), _commits(n, r)))
            total = statistics.median(totals)
            med = {k: round(statistics.median(x[k] for x in parts), 3) for k in parts[0]}
            med["other"] = round(total - sum(med.values()), 3)
            results[f"record_push_ms_{n}"] = total
            breakdown[n] = {"total_ms": round(total, 3), **med}
    results["breakdown"] = breakdown
    return results
