"""The simulated application and the lock-wait monitor that run beside a migration."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import psycopg

from .. import datagen
from .common import APP_NAME, APP_THREADS, MIGRATION_APP, READER_GAP_S, READER_HOLD_S, \
    SAMPLE_INTERVAL, _connect

# ---------------------------------------------------------------------------
# the simulated application and the lock monitor

@dataclass
class AppStats:
    latencies: list = field(default_factory=list)   # (latency_s, op, started_monotonic)
    errors: list = field(default_factory=list)      # "op: SQLSTATE: message" texts
    #: each failed statement: (started_monotonic, op, seconds until it failed)
    failures: list = field(default_factory=list)
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
                    self.stats.failures.append((t0, "report reads LabSession",
                                                time.monotonic() - t0))
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
                    self.stats.failures.append((t0, op, time.monotonic() - t0))
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


