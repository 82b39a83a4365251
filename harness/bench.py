"""``harness bench``: the pack at production scale, against floors and references.

One run, one server, in this order:

1. a fresh database at the baseline (``V0001`` + ``V0002__roles``), filled by
   :mod:`harness.datagen` at scale N (N LabSession, N VerificationLog, 10N
   AuditLog rows); ``datagen_s``;
2. the copy floor: ``INSERT ... SELECT`` of LabSession, VerificationLog (into a
   plain text copy, no jsonb) and AuditLog into unindexed, unconstrained tables
   (``copy_floor_s``; the copies are dropped again). A second, wider floor
   (``jsonb_floor_s``) also writes every VerificationLog text as new jsonb
   (``to_jsonb``) into an unindexed table: the part of V0013's cost that any
   conversion pays, because the plain copy reuses the compressed TOAST values
   as they are while new jsonb must be compressed and written again
   (``chain_vs_jsonb_floor_ratio``);
3. the whole chain ``V0003..end`` through :func:`harness.apply.apply`
   (``migration_s``) while a simulated application (3 threads, own connections,
   as a LOGIN member of ``forgea_app`` when the bench may create one, else as the
   owner; ``lock_timeout`` 0) inserts sessions with the app's columns, updates
   ``lastActivityAt``, reads VerificationLog by id and inserts AuditLog rows,
   timing every statement, while a fourth app connection plays a long-running
   report: it reads LabSession in a transaction and stays idle in it (holding
   ACCESS SHARE on LabSession) for ``READER_HOLD_S`` seconds, then commits and
   pauses ``READER_GAP_S``, over and over (the migration's ACCESS EXCLUSIVE
   requests queue behind it, and every app statement on LabSession behind
   those: what the short, retried lock_timeout of the harness bounds); a
   monitor samples ``pg_stat_activity`` /
   ``pg_locks`` / ``pg_blocking_pids`` every ~20 ms and records, for each app
   statement waiting on a lock held or queued by the migration session
   (``application_name = 'harness'``, directly or through a chain of waiters),
   how long it has been waiting, which migration file and statement was running
   and which lock it waited for (``max_blocking_lock_s``);
4. the queue: enqueue + claim + complete cycles per second with 1, 4 and 16
   worker threads, against procrastinate 3.x doing defer + fetch + finish with
   the same per-session ordering (procrastinate's ``lock`` = the session) in a
   second database on the same cluster (its own schema.sql, driven through its
   SQL procedures ``procrastinate_defer_jobs_v1`` / ``procrastinate_fetch_job_v2``
   / ``procrastinate_finish_job_v1``, exactly what its job manager sends); both
   databases are vacuumed first, then for each worker count the two queues run
   alternately, ``QUEUE_REPEATS`` rounds each, and the median round is reported
   (single rounds moved by +-30% on 2 cores);
5. ``record_push``: 4 connections pushing 5 commits at a time to 200 sessions
   made with ``create_lab_session``, against multi-row INSERTs of the very same
   LabAttempt rows (5 per statement, same 4 connections) into
   ``CREATE TABLE ... (LIKE "LabAttempt")`` (no indexes, checks or triggers).

Without ``--target`` the bench starts a throwaway cluster of the major chosen by
``--pg-version`` (18 unless told; any of 18, 17, 16, 15), with fsync and
synchronous_commit off and shared_buffers 1GB, and destroys it afterwards; with
``--target DSN`` it creates two new databases on that server (needs CREATEDB)
and drops them at the end (``--keep`` keeps them).

Performance is reported, never asserted. ``--json`` prints one flat object of
numbers; ``--report FILE`` also writes the details (per-file migration times,
the blocking episodes with their statements and locks) as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import datagen

APP_NAME = "bench-app"
MIGRATION_APP = "harness"
SAMPLE_INTERVAL = 0.02
APP_THREADS = 3
#: the long-running reader of the simulated app: seconds idle in a transaction
#: holding ACCESS SHARE on LabSession, then seconds between two such transactions
READER_HOLD_S = (2.0, 4.0)
READER_GAP_S = (0.5, 1.0)
PUSH_CONNECTIONS = 4
PUSH_SESSIONS_PER_CONN = 50
COMMITS_PER_PUSH = 5
WORKER_COUNTS = (1, 4, 16)
QUEUE_REPEATS = 3   # rounds per side and worker count, alternating; the median is reported

REQUIRED_KEYS = (
    "max_blocking_lock_s", "app_worst_latency_s", "chain_vs_copy_ratio",
    "record_push_vs_insert_ratio", "queue_vs_procrastinate_ratio_w4",
    "queue_vs_procrastinate_ratio_w16", "scale", "server_version",
)


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _with_db(dsn: str, dbname: str, **extra) -> str:
    d = conninfo_to_dict(dsn)
    d["dbname"] = dbname
    d.update(extra)
    return make_conninfo(**{k: v for k, v in d.items() if v is not None})


def _connect(dsn: str, app: str = "bench", **kw) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, application_name=app, **kw)


# ---------------------------------------------------------------------------
# machine

def machine_info() -> dict:
    info = {"cpu_cores": os.cpu_count() or 0}
    try:
        import psutil
        info["ram_gb"] = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except Exception:
        info["ram_gb"] = 0
    return info


# ---------------------------------------------------------------------------
# the simulated application and the lock monitor

@dataclass
class AppStats:
    latencies: list = field(default_factory=list)   # (latency_s, op, started_monotonic)
    errors: list = field(default_factory=list)
    ops: int = 0
    reader_transactions: int = 0
    reader_held_s: float = 0.0


class App:
    """APP_THREADS threads of short app statements on their own connections, and
    one long-running reader (see the module docstring)."""

    def __init__(self, dsn: str, scale: int, threads: int = APP_THREADS):
        self.dsn = dsn
        self.scale = scale
        self.threads_n = threads
        self.stop = threading.Event()
        self.stats = AppStats()
        self.lock = threading.Lock()
        self.pair = 0   # next spare (user, lab) pair for a new session
        self.threads: list[threading.Thread] = []

    def next_pair(self) -> int:
        with self.lock:
            p = self.pair
            self.pair += 1
            return p

    def start(self):
        for n in range(self.threads_n):
            t = threading.Thread(target=self._run, args=(n,), name=f"bench-app-{n}", daemon=True)
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self._reader, name="bench-app-reader", daemon=True)
        t.start()
        self.threads.append(t)

    def _reader(self):
        """A report that keeps a transaction open on LabSession, idle, for seconds."""
        rnd = random.Random(99)
        try:
            conn = psycopg.connect(self.dsn, autocommit=False, application_name=APP_NAME,
                                   options="-c lock_timeout=0 -c statement_timeout=0")
        except psycopg.Error as e:
            self.stats.errors.append(f"connect reader: {e}")
            return
        with conn:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    conn.execute('SELECT count(*) FROM "LabSession" WHERE "id" = %s',
                                 (datagen.session_id(rnd.randrange(self.scale)),)).fetchall()
                except psycopg.Error as e:
                    conn.rollback()
                    self.stats.errors.append(f"reader: {e.sqlstate}: {str(e).strip()[:200]}")
                    continue
                self.stats.latencies.append((time.monotonic() - t0, "report reads LabSession",
                                             t0))
                self.stop.wait(rnd.uniform(*READER_HOLD_S))   # idle in transaction
                conn.commit()
                self.stats.reader_transactions += 1
                self.stats.reader_held_s += time.monotonic() - t0
                self.stop.wait(rnd.uniform(*READER_GAP_S))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def _run(self, n: int):
        rnd = random.Random(n)
        try:
            conn = _connect(self.dsn, APP_NAME, options="-c lock_timeout=0 -c statement_timeout=0")
        except psycopg.Error as e:
            self.stats.errors.append(f"connect: {e}")
            return
        with conn:
            while not self.stop.is_set():
                r = rnd.random()
                i = rnd.randrange(self.scale)
                t0 = time.monotonic()
                try:
                    if r < 0.3:
                        op = "insert LabSession"
                        p = self.next_pair()
                        u, l = divmod(p, datagen.LABS)
                        if u >= datagen.SPARE_USERS_APP:
                            continue
                        conn.execute(
                            'INSERT INTO "LabSession" ("id", "userId", "labId", "status", '
                            '"userForkUrl", "previewUrl", "startedAt", "lastActivityAt") VALUES '
                            "(%s, %s, %s, 'IN_PROGRESS', %s, NULL, now(), now())",
                            (uuid.uuid4(), datagen.spare_user_id(u), datagen.lab_id(l),
                             f"https://github.com/appuser{u}/lab{l}-live"))
                    elif r < 0.6:
                        # as transitionLabSession() does: only an active session's
                        # activity is bumped (a terminal session is a closed record)
                        op = "update LabSession.lastActivityAt"
                        conn.execute('UPDATE "LabSession" SET "lastActivityAt" = now() '
                                     "WHERE \"id\" = %s AND \"status\" IN ('IN_PROGRESS', 'STUCK')",
                                     (datagen.session_id(i),))
                    elif r < 0.8:
                        op = "select VerificationLog"
                        conn.execute('SELECT "id", "commitSha", length("ciOutput") '
                                     'FROM "VerificationLog" WHERE "id" = %s',
                                     (datagen.vlog_id(i),)).fetchall()
                    else:
                        op = "insert AuditLog"
                        conn.execute(
                            'INSERT INTO "AuditLog" ("id", "userId", "action", "metadata", '
                            '"createdAt", "actorId") VALUES (%s, NULL, %s, %s::jsonb, now(), %s)',
                            (uuid.uuid4(), "BENCH_APP", json.dumps({"i": i}), "bench-app"))
                except psycopg.Error as e:
                    self.stats.errors.append(f"{op}: {e.sqlstate}: {str(e).strip()[:200]}")
                    continue
                dt = time.monotonic() - t0
                self.stats.latencies.append((dt, op, t0))
                self.stats.ops += 1
                time.sleep(0.002)


class Monitor:
    """Samples which app statements wait on the migration session, every ~20 ms."""

    QUERY = """
        SELECT a.pid, a.application_name, a.wait_event_type,
               extract(epoch FROM clock_timestamp() - a.query_start)::float8 AS waited,
               a.query_start,
               CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END,
               left(a.query, 300)
        FROM pg_catalog.pg_stat_activity AS a
        WHERE a.datname = current_database()
          AND a.application_name IN (%s, %s) AND a.pid <> pg_backend_pid()
    """
    LOCKQ = """
        SELECT l.pid, l.locktype, l.mode, l.granted, l.relation::regclass::text
        FROM pg_catalog.pg_locks AS l WHERE l.pid = ANY(%s)
    """

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.stop = threading.Event()
        self.current_file = None        # set by the migration's progress callback
        self.episodes: dict = {}         # (pid, query_start) -> details
        self.samples = 0
        self.thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=30)

    def _run(self):
        with _connect(self.dsn, "bench-monitor") as conn:
            while not self.stop.is_set():
                t = time.monotonic()
                try:
                    self._sample(conn)
                except psycopg.Error:
                    pass
                self.samples += 1
                time.sleep(max(0.0, SAMPLE_INTERVAL - (time.monotonic() - t)))

    def _sample(self, conn):
        rows = conn.execute(self.QUERY, (APP_NAME, MIGRATION_APP)).fetchall()
        mig = {r[0]: r for r in rows if r[1] == MIGRATION_APP}
        if not mig:
            return
        app = {r[0]: r for r in rows if r[1] == APP_NAME}
        blockers = {pid: set(r[5] or ()) for pid, r in app.items() if r[2] == "Lock"}
        if not blockers:
            return

        def reaches_migration(pid, seen=()):
            for b in blockers.get(pid, ()):
                if b in mig:
                    return b
                if b in blockers and b not in seen:
                    got = reaches_migration(b, (*seen, pid))
                    if got:
                        return got
            return None

        hits = {pid: reaches_migration(pid) for pid in blockers}
        hits = {p: m for p, m in hits.items() if m}
        if not hits:
            return
        locks = conn.execute(self.LOCKQ, (list(hits) + list(set(hits.values())),)).fetchall()
        for pid, mpid in hits.items():
            r = app[pid]
            waiting = [l for l in locks if l[0] == pid and not l[3]]
            w = waiting[0] if waiting else None
            held = sorted({f"{l[2]} on {l[4]}" if l[4] else f"{l[2]} ({l[1]})"
                           for l in locks if l[0] == mpid and l[3]
                           and (w is None or l[4] == w[4] or l[1] == w[1] == "transactionid")})
            key = (pid, r[4])
            ep = self.episodes.get(key)
            info = {
                "blocked_s": r[3],
                "app_statement": r[6][:160],
                "waits_for": (f"{w[2]} on {w[4]}" if w and w[4] else
                              (f"{w[2]} ({w[1]})" if w else "?")),
                "migration_file": self.current_file,
                "migration_statement": (mig[mpid][6] or "")[:300],
                "migration_locks": held[:6],
                "direct": mpid in blockers[pid],
            }
            if ep is None or info["blocked_s"] >= ep["blocked_s"]:
                self.episodes[key] = info

    def worst(self) -> dict | None:
        if not self.episodes:
            return None
        return max(self.episodes.values(), key=lambda e: e["blocked_s"])


class _Progress(io.TextIOBase):
    """The migration's messages: kept, and only 'applied ...' lines echoed."""

    def __init__(self, echo: bool):
        self.lines: list[str] = []
        self.echo = echo

    def write(self, s):
        for line in s.splitlines():
            if line.strip():
                self.lines.append(line)
                if self.echo and (line.startswith("applied") or "retry" in line):
                    _say(line)
        return len(s)


# ---------------------------------------------------------------------------
# phases

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


def _app_dsn(dsn: str, admin: psycopg.Connection, cleanup: list) -> tuple[str, str]:
    """A LOGIN member of forgea_app when we may create one, else the owner's DSN."""
    role = f"bench_app_{os.getpid()}"
    try:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN PASSWORD 'bench' IN ROLE forgea_app").format(
            pgsql.Identifier(role)))
    except psycopg.Error as e:
        _say(f"cannot create a forgea_app login role ({e.sqlstate}); the app runs as the owner")
        return dsn, "owner"
    cleanup.append(("role", role))
    return _with_db(dsn, conninfo_to_dict(dsn).get("dbname"), user=role, password="bench"), role


def _apply_chain(dsn: str, progress, out) -> None:
    from . import apply as A
    A.apply(dsn, None, progress=progress, err=out)


def _apply_naive(dsn: str, progress, out) -> None:
    from . import naive
    with _connect(dsn, MIGRATION_APP) as conn:
        naive.run(conn, progress)


def run_migration(dsn: str, app_dsn: str, scale: int, echo: bool,
                  runner=_apply_chain) -> dict:
    """Run ``runner`` (the pack's chain, or the naive migration) while the
    simulated app works and the monitor samples who waits on whom."""
    app = App(app_dsn, scale)
    mon = Monitor(dsn)
    file_times: dict[str, float] = {}
    starts: dict[str, float] = {}

    def progress(kind, mid):
        if kind == "apply":
            starts[mid] = time.monotonic()
            mon.current_file = mid
        elif kind == "applied" and mid in starts:
            file_times[mid] = round(time.monotonic() - starts[mid], 3)

    out = _Progress(echo)
    mon.start()
    app.start()
    time.sleep(0.5)
    t = time.monotonic()
    try:
        runner(dsn, progress, out)
    finally:
        elapsed = time.monotonic() - t
        time.sleep(0.3)
        app.finish()
        mon.finish()
    lat = app.stats.latencies
    worst = max(lat, default=(0.0, "none", 0.0))
    worst_ep = mon.worst()
    by_op: dict[str, float] = {}
    for dt, op, _ in lat:
        by_op[op] = max(by_op.get(op, 0.0), dt)
    lat_sorted = sorted(x[0] for x in lat)
    p99 = lat_sorted[int(0.99 * (len(lat_sorted) - 1))] if lat_sorted else 0.0
    return {
        "migration_s": elapsed,
        "file_times": file_times,
        "app_ops": app.stats.ops,
        "app_errors": app.stats.errors[:20],
        "app_error_count": len(app.stats.errors),
        "app_worst_latency_s": worst[0],
        "app_worst_op": worst[1],
        "app_p99_latency_s": p99,
        "app_worst_by_op": by_op,
        "reader_transactions": app.stats.reader_transactions,
        "reader_held_s": round(app.stats.reader_held_s, 1),
        "lock_retries": sum(1 for l in out.lines if "lock not available" in l),
        "max_blocking_lock_s": worst_ep["blocked_s"] if worst_ep else 0.0,
        "worst_blocking": worst_ep,
        "blocking_episodes": sorted(mon.episodes.values(), key=lambda e: -e["blocked_s"])[:15],
        "monitor_samples": mon.samples,
        "notices": [l for l in out.lines if "unmapped" not in l][-60:],
    }


# ---- sessions and pushes ----------------------------------------------------

def _sha() -> str:
    return os.urandom(20).hex()


def _commits(n: int, k: int) -> list[dict]:
    now = datetime.now(timezone.utc).isoformat()
    out = []
    for j in range(n):
        out.append({
            "id": _sha(), "message": f"fix step {k}.{j}", "timestamp": now,
            "author": {"name": f"Dev {k}", "email": f"dev{k}@example.test",
                       "username": f"dev{k}"},
            "added": [f"src/new_{k}_{j}.ts"], "modified": ["src/index.ts", f"src/m{j}.ts"],
            "removed": [],
        })
    return out


def make_sessions(conn, first_pair: int, count: int, tag: str) -> list[dict]:
    """count sessions via create_lab_session on spare bench users (after the app's)."""
    out = []
    for n in range(count):
        p = first_pair + n
        u, l = divmod(p, datagen.LABS)
        user = datagen.spare_user_id(datagen.SPARE_USERS_APP + u)
        url = f"https://github.com/bench{tag}{p}/lab{l}"
        repo_id = 50_000_000 + p
        sid = conn.execute("SELECT create_lab_session(%s, %s, %s, %s, %s)",
                           (user, datagen.lab_id(l), url, repo_id, f"bench-{tag}-{p}")).fetchone()[0]
        out.append({"id": sid, "url": url, "repo_id": repo_id})
    return out


def push(conn, s: dict, commits: list[dict]):
    return conn.execute(
        "SELECT * FROM record_push(%s, %s, %s, %s, %s, %s, %s::jsonb)",
        (str(uuid.uuid4()), s["repo_id"], s["url"], "refs/heads/main", commits[-1]["id"],
         datetime.now(timezone.utc), json.dumps(commits))).fetchall()


def _parallel(n: int, fn) -> float:
    errors: list = []

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t


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


# ---- queue ------------------------------------------------------------------

def bench_ledger_recompute(dsn: str, rows: int) -> dict:
    """The independent recomputation (harness.ledger) over ``rows`` ledger rows,
    against the database's own verify_lab_attempt_chain() in the same run.

    The rows go in through the chain trigger (10 commits per existing session,
    one INSERT ... SELECT per 2000 sessions), so they are real chained rows.
    """
    from . import ledger
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
        "ledger_recompute_rows_per_s": rec.rows_per_s,
        "ledger_sql_verify_s": sql_s,
        "ledger_recompute_vs_sql_verify_ratio": rec.seconds / sql_s if sql_s else None,
    }


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


# ---------------------------------------------------------------------------
# orchestration

def _server_setup(cluster) -> None:
    with cluster.connect() as conn:
        for k, v in (("shared_buffers", "1GB"), ("max_wal_size", "8GB"),
                     ("maintenance_work_mem", "512MB"), ("work_mem", "32MB"),
                     ("checkpoint_timeout", "15min")):
            conn.execute(f"ALTER SYSTEM SET {k} = '{v}'")
    cluster.pg_ctl("restart", "-w", "-m", "fast", "-t", "120")


def measure(server_dsn: str, scale: int, *, echo: bool = True, keep: bool = False) -> dict:
    """Run every phase on the server of ``server_dsn`` (a maintenance DSN)."""
    from . import apply as A
    tag = f"{os.getpid()}_{int(time.time())}"
    db, pdb = f"forgea_bench_{tag}", f"procrastinate_bench_{tag}"
    cleanup: list = []
    results: dict = {"scale": scale}
    details: dict = {}
    admin = _connect(server_dsn, "bench-admin")
    try:
        results["server_version"] = int(admin.execute("SHOW server_version_num").fetchone()[0])
        details["server_version_text"] = admin.execute("SHOW server_version").fetchone()[0]
        for d in (db, pdb):
            admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(d)))
            cleanup.append(("db", d))
        dsn = _with_db(server_dsn, db)
        pdsn = _with_db(server_dsn, pdb)
        A.apply(dsn, "V0002__roles", err=_Progress(False))
        app_dsn, app_role = _app_dsn(dsn, admin, cleanup)
        details["app_role"] = app_role

        _say(f"generating scale {scale} ...")
        gen = datagen.generate(dsn, scale, log=_say if echo else None)
        results["datagen_s"] = gen["total_s"]
        details["datagen"] = gen
        naive_db = f"forgea_naive_{tag}"   # the same data, for the naive migration
        admin.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            pgsql.Identifier(naive_db), pgsql.Identifier(db)))
        cleanup.append(("db", naive_db))
        _say(f"data generated in {gen['total_s']:.1f}s; copy floor ...")
        results["copy_floor_s"] = copy_floor(dsn)
        results["jsonb_floor_s"] = jsonb_floor(dsn)
        _say(f"copy floor {results['copy_floor_s']:.2f}s, with jsonb {results['jsonb_floor_s']:.2f}s;"
             " migration chain with the app running ...")
        mig = run_migration(dsn, app_dsn, scale, echo)
        results["migration_s"] = mig["migration_s"]
        results["chain_vs_copy_ratio"] = mig["migration_s"] / results["copy_floor_s"]
        results["migration_vs_copy_ratio"] = results["chain_vs_copy_ratio"]
        results["chain_vs_jsonb_floor_ratio"] = mig["migration_s"] / results["jsonb_floor_s"]
        for k in ("max_blocking_lock_s", "app_worst_latency_s", "app_p99_latency_s", "app_ops",
                  "app_error_count"):
            results[k] = mig[k]
        details["migration"] = mig
        _say(f"migration {mig['migration_s']:.1f}s; worst app latency "
             f"{mig['app_worst_latency_s']:.3f}s; longest block {mig['max_blocking_lock_s']:.3f}s")

        _say("the naive migration (one transaction per file, as prisma migrate) on a copy ...")
        nv = run_migration(_with_db(server_dsn, naive_db), _with_db(app_dsn, naive_db), scale,
                           echo, runner=_apply_naive)
        results["naive_migration_s"] = nv["migration_s"]
        results["naive_max_blocking_lock_s"] = nv["max_blocking_lock_s"]
        results["naive_app_worst_latency_s"] = nv["app_worst_latency_s"]
        results["naive_app_error_count"] = nv["app_error_count"]
        details["naive"] = nv
        _say(f"naive migration {nv['migration_s']:.1f}s; longest block "
             f"{nv['max_blocking_lock_s']:.3f}s; app errors {nv['app_error_count']}")

        small = scale < 20000
        q = bench_queue(dsn, pdsn, 0.5 if small else 3.0, 60 if small else 400,
                        25 if small else 120)
        results.update(q)
        _say("queue: " + ", ".join(f"w{w} {q[f'queue_cycles_per_s_w{w}']:.0f}/s vs "
                                   f"{q[f'procrastinate_cycles_per_s_w{w}']:.0f}/s"
                                   for w in WORKER_COUNTS))
        rp = bench_record_push(dsn, 1.5 if small else 10.0)
        results.update(rp)
        _say(f"record_push {rp['record_push_commits_per_s']:.0f} commits/s vs insert ceiling "
             f"{rp['insert_ceiling_commits_per_s']:.0f}/s")
        lr = bench_ledger_recompute(dsn, min(scale, 1_000_000))
        results.update(lr)
        _say(f"ledger: {lr['ledger_rows']} rows recomputed in Python in "
             f"{lr['ledger_recompute_s']:.1f}s ({lr['ledger_recompute_rows_per_s']:.0f} rows/s), "
             f"verify_lab_attempt_chain() {lr['ledger_sql_verify_s']:.1f}s")
        results.update(machine_info())
        results["sample_interval_s"] = SAMPLE_INTERVAL
    finally:
        if not keep:
            for kind, name in reversed(cleanup):
                try:
                    if kind == "db":
                        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            pgsql.Identifier(name)))
                    else:
                        admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(
                            pgsql.Identifier(name)))
                except psycopg.Error as e:
                    _say(f"cleanup of {kind} {name} failed: {e}")
        admin.close()
    return {"results": results, "details": details}


def render_table(r: dict, details: dict | None = None) -> str:
    rows = [
        ("scale", r["scale"]), ("server_version", r["server_version"]),
        ("cpu_cores / ram_gb", f"{r.get('cpu_cores')} / {r.get('ram_gb')}"),
        ("datagen_s", r.get("datagen_s")), ("copy_floor_s", r.get("copy_floor_s")),
        ("jsonb_floor_s", r.get("jsonb_floor_s")),
        ("migration_s", r.get("migration_s")), ("chain_vs_copy_ratio", r.get("chain_vs_copy_ratio")),
        ("chain_vs_jsonb_floor_ratio", r.get("chain_vs_jsonb_floor_ratio")),
        ("max_blocking_lock_s", r.get("max_blocking_lock_s")),
        ("naive_migration_s", r.get("naive_migration_s")),
        ("naive_max_blocking_lock_s", r.get("naive_max_blocking_lock_s")),
        ("naive_app_worst_latency_s", r.get("naive_app_worst_latency_s")),
        ("naive_app_error_count", r.get("naive_app_error_count")),
        ("app_worst_latency_s", r.get("app_worst_latency_s")),
        ("app_p99_latency_s", r.get("app_p99_latency_s")),
        ("record_push_pushes_per_s", r.get("record_push_pushes_per_s")),
        ("record_push_commits_per_s", r.get("record_push_commits_per_s")),
        ("insert_ceiling_commits_per_s", r.get("insert_ceiling_commits_per_s")),
        ("record_push_vs_insert_ratio", r.get("record_push_vs_insert_ratio")),
        ("ledger_rows", r.get("ledger_rows")),
        ("ledger_recompute_s", r.get("ledger_recompute_s")),
        ("ledger_recompute_rows_per_s", r.get("ledger_recompute_rows_per_s")),
        ("ledger_sql_verify_s", r.get("ledger_sql_verify_s")),
        ("ledger_recompute_vs_sql_verify_ratio", r.get("ledger_recompute_vs_sql_verify_ratio")),
    ]
    for w in WORKER_COUNTS:
        rows += [(f"queue_cycles_per_s_w{w}", r.get(f"queue_cycles_per_s_w{w}")),
                 (f"procrastinate_cycles_per_s_w{w}", r.get(f"procrastinate_cycles_per_s_w{w}")),
                 (f"queue_vs_procrastinate_ratio_w{w}", r.get(f"queue_vs_procrastinate_ratio_w{w}"))]
    out = ["| figure | value |", "|---|---|"]
    for k, v in rows:
        out.append(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
    if details:
        wb = details.get("migration", {}).get("worst_blocking")
        if wb:
            out.append("")
            out.append(f"longest block: {wb['blocked_s']:.3f}s in {wb['migration_file']}: app "
                       f"waited for {wb['waits_for']} (migration holds: "
                       f"{', '.join(wb['migration_locks']) or '?'})")
            out.append(f"  migration statement: {wb['migration_statement'][:200]!r}")
            out.append(f"  app statement: {wb['app_statement'][:120]!r}")
        mig = details.get("migration", {})
        if mig.get("app_worst_op"):
            out.append(f"worst app statement: {mig['app_worst_op']} "
                       f"({mig['app_worst_latency_s']:.3f}s)")
    return "\n".join(out)


def run(dsn: str | None = None, scale: int = 1_000_000, json_output: bool = False, *,
        report: str | None = None, keep: bool = False, version: int = 18) -> int:
    """``harness bench``; returns the exit code."""
    cluster = None
    try:
        if dsn is None:
            from . import servers
            _say(f"starting a throwaway PostgreSQL {version} cluster ...")
            try:
                cluster = servers.start_throwaway(version)
            except (servers.ServerNotFound, servers.ServerError) as e:
                _say(f"cannot start PostgreSQL {version}: {str(e).splitlines()[0]}")
                return 4
            _server_setup(cluster)
            server_dsn = cluster.dsn()
        else:
            server_dsn = dsn
        out = measure(server_dsn, scale, echo=True, keep=keep)
    except psycopg.OperationalError as e:
        _say(f"cannot reach the database: {str(e).strip()}")
        return 4
    finally:
        if cluster is not None:
            cluster.destroy()
    res = out["results"]
    if report:
        Path(report).write_text(json.dumps(out, indent=2, default=str) + "\n")
    if json_output:
        print(json.dumps({k: v for k, v in res.items() if isinstance(v, (int, float))}, indent=2))
    else:
        print(render_table(res, out["details"]))
    bad = [k for k in REQUIRED_KEYS if not isinstance(res.get(k), (int, float))
           or not math.isfinite(res[k])]
    if bad:
        _say(f"missing figures: {', '.join(bad)}")
        return 1
    return 0


def main(argv=None) -> int:
    from .servers import SUPPORTED_VERSIONS
    p = argparse.ArgumentParser(
        prog="harness bench",
        description="Benchmarks at production scale. Exit codes: 0 ok, 1 a phase "
                    "failed or a figure is missing, 2 usage, 4 server unreachable.")
    p.add_argument("--target", metavar="DSN",
                   help="server to use (two new databases are created there; needs CREATEDB); "
                        "default: a throwaway cluster of --pg-version")
    p.add_argument("--pg-version", type=int, choices=SUPPORTED_VERSIONS,
                   metavar="N",
                   help="major of the throwaway cluster: 18 (default), 17, 16 or 15; "
                        "not with --target")
    p.add_argument("--scale", type=int, default=1_000_000,
                   help="LabSession and VerificationLog rows (AuditLog: 10x); default 1000000")
    p.add_argument("--json", action="store_true", help="print one flat JSON object of numbers")
    p.add_argument("--report", metavar="FILE", help="also write full details as JSON to FILE")
    p.add_argument("--keep", action="store_true", help="keep the bench databases (--target)")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    if a.scale < 100:
        print("harness bench: --scale must be at least 100", file=sys.stderr)
        return 2
    if a.target and a.pg_version is not None:
        print("harness bench: --pg-version picks the throwaway server; it cannot be "
              "combined with --target", file=sys.stderr)
        return 2
    try:
        return run(a.target, a.scale, a.json, report=a.report, keep=a.keep,
                   version=a.pg_version or 18)
    except psycopg.Error as e:
        from .errors import describe_pg_error
        line, extra = describe_pg_error(e)
        print("harness bench: " + "\n  ".join([line, *extra]), file=sys.stderr)
        return 1
    except Exception as e:
        from .errors import HarnessError
        if isinstance(e, HarnessError):
            print(f"harness bench: {e.render()}", file=sys.stderr)
            return e.exit_code
        raise


if __name__ == "__main__":
    sys.exit(main())
