"""The queue: our enqueue + claim + complete against procrastinate's defer + fetch + finish."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from pathlib import Path

from .common import PUSH_CONNECTIONS, PUSH_SESSIONS_PER_CONN, QUEUE_REPEATS, WORKER_COUNTS, \
    _commits, _connect, _sha, make_sessions, push

def _procrastinate_schema() -> str:
    import procrastinate
    return (Path(procrastinate.__file__).parent / "sql" / "schema.sql").read_text()


def bench_queue(dsn: str, pdsn: str, duration: float, sessions_n: int, commits_per_session: int
                ) -> dict:
    # setup (not timed): sessions, one push each (its head job is the backlog), the
    # other commits are LabAttempts without a job, enqueued by the cycles below
    with _connect(dsn) as conn:
        sessions = make_sessions(conn, PUSH_CONNECTIONS * PUSH_SESSIONS_PER_CONN + 100,
                                 sessions_n, "q")
        per_session = []
        for k, s in enumerate(sessions):
            commits = _commits(commits_per_session, k)
            rows = push(conn, s, commits)
            per_session.append([(r[1], s["id"], r[0]) for r in rows if r[2] and not r[3]])
    # round robin over sessions; each round gets its own share of the attempts (an
    # attempt is enqueued once), so a fast round cannot starve a later one
    items = [x for tup in zip(*per_session) for x in tup]
    shares = len(WORKER_COUNTS) * QUEUE_REPEATS
    pools = [iter(items[k::shares]) for k in range(shares)]
    backlog = sessions_n
    with _connect(pdsn) as conn:
        conn.execute(_procrastinate_schema())
        for k, s in enumerate(sessions):
            _pdefer(conn, str(s["id"]), {"sessionId": str(s["id"]), "backlog": k})
    # a freshly migrated database is still being vacuumed: settle both first
    for d in (dsn, pdsn):
        with _connect(d) as conn:
            conn.execute("VACUUM (ANALYZE)")
    results = {}
    for k, w in enumerate(WORKER_COUNTS):
        ours, theirs = [], []
        for r in range(QUEUE_REPEATS):   # ours, theirs, ours, theirs, ...
            ours.append(_queue_round(w, duration, pools[k * QUEUE_REPEATS + r],
                                     lambda c, i, item: _ours_cycle(c, i, item), dsn,
                                     "bench-queue"))
            theirs.append(_queue_round(w, duration, None,
                                       lambda c, i, item: _procr_cycle(c, i, item, sessions),
                                       pdsn, "bench-procrastinate", setup=_preg))
        results[f"queue_cycles_per_s_w{w}"] = statistics.median(ours)
        results[f"procrastinate_cycles_per_s_w{w}"] = statistics.median(theirs)
        mid = results[f"procrastinate_cycles_per_s_w{w}"]
        results[f"queue_vs_procrastinate_ratio_w{w}"] = (
            results[f"queue_cycles_per_s_w{w}"] / mid if mid else 0.0)
    results["queue_backlog_jobs"] = backlog
    return results


def _pdefer(conn, lock: str, args: dict):
    conn.execute(
        "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(%s, %s, %s, %s, %s, %s::jsonb, %s)"
        "::procrastinate_job_to_defer_v1]))",
        ("verification", "forgea.verify", 0, lock, None, json.dumps(args), None)).fetchall()


def _preg(conn):
    return conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()").fetchone()[0]


def _ours_cycle(conn, state, item):
    attempt_id, session_id, sha = item
    conn.execute("SELECT enqueue_verification_job(%s)", (attempt_id,)).fetchone()
    wid = state["worker"]
    row = conn.execute('SELECT "id" FROM claim_verification_job(%s, %s)',
                       (wid, "5 minutes")).fetchone()
    if row is None:
        return False
    conn.execute("SELECT 1 FROM complete_verification_job(%s, %s, 'FAILED', 1, %s::jsonb)",
                 (row[0], wid, json.dumps({"exitCode": 1, "summary": "1 test failed"}))).fetchall()
    return True


def _procr_cycle(conn, state, item, sessions):
    s = sessions[state["n"] % len(sessions)]
    state["n"] += 1
    _pdefer(conn, str(s["id"]), {"labAttemptId": str(uuid.uuid4()), "sessionId": str(s["id"]),
                                 "commitSha": _sha()})
    row = conn.execute("SELECT id FROM procrastinate_fetch_job_v2(%s, %s)",
                       (["verification"], state["worker"])).fetchone()
    if row is None or row[0] is None:
        return False
    conn.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (row[0],))
    return True


def _queue_round(workers: int, duration: float, pool, cycle, dsn, app, setup=None) -> float:
    lock = threading.Lock()
    it = pool
    counts = [0] * workers
    start = threading.Barrier(workers + 1)
    stop_at = [0.0]

    def worker(i):
        with _connect(dsn, app) as conn:
            state = {"worker": (setup(conn) if setup else f"bench-worker-{i}"), "n": i * 7919}
            start.wait()
            while time.monotonic() < stop_at[0]:
                item = None
                if it is not None:
                    with lock:
                        item = next(it, None)
                    if item is None:
                        break
                if cycle(conn, state, item):
                    counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for th in threads:
        th.start()
    stop_at[0] = time.monotonic() + 3600
    start.wait()
    t = time.monotonic()
    stop_at[0] = t + duration
    for th in threads:
        th.join()
    elapsed = time.monotonic() - t
    return sum(counts) / elapsed if elapsed else 0.0


