"""The migration under load: the pack's chain or the naive one, with the app and the monitor."""

from __future__ import annotations

import io
import os
import re
import time

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict

from .app import App, Monitor
from .common import MIGRATION_APP, _connect, _say, _with_db

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
    from .. import apply as A
    A.apply(dsn, None, progress=progress, err=out)


def _apply_naive(dsn: str, progress, out) -> None:
    from .. import naive
    with _connect(dsn, MIGRATION_APP) as conn:
        naive.run(conn, progress)


#: a lock-retry line of harness.lock_retry.Retrier: the lock_timeout of the failed
#: attempt and the backoff slept before the next one
_RETRY_LINE = re.compile(r"lock not available within lock_timeout (\S+) .*"
                         r"; retry \d+/\d+ in ([0-9.]+)s")


def _seconds(setting: str) -> float | None:
    """A PostgreSQL duration setting ('100ms', '5min', '2s', '250') in seconds."""
    m = re.fullmatch(r"([0-9.]+)\s*(us|ms|s|min|h|d)?", setting.strip())
    if not m:
        return None
    unit = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0,
            "d": 86400.0}[m.group(2)]
    return float(m.group(1)) * unit


def lock_retry_time(lines: list[str]) -> dict:
    """The time the run lost to lock retries, from the retry lines it printed: each
    failed attempt waited its whole lock_timeout for the lock (55P03 is raised when
    it expires), then the backoff was slept. A run without lock_timeout (the naive
    one) prints none: 0."""
    waited, slept = 0.0, 0.0
    for line in lines:
        m = _RETRY_LINE.search(line)
        if m:
            waited += _seconds(m.group(1)) or 0.0
            slept += float(m.group(2))
    return {"lock_retries": sum(1 for l in lines if "lock not available" in l),
            "lock_retry_wait_s": round(waited, 3),
            "lock_retry_backoff_s": round(slept, 3),
            "lock_retry_s": round(waited + slept, 3)}


def run_migration(dsn: str, app_dsn: str, scale: int, echo: bool,
                  runner=_apply_chain) -> dict:
    """Run ``runner`` (the pack's chain, or the naive migration) while the
    simulated app works and the monitor samples who waits on whom.

    Times in ``file_spans``, ``latency_series`` and ``failures`` are seconds from
    the runner's start (the app starts 0.5 s before it: negative times)."""
    app = App(app_dsn, scale)
    mon = Monitor(dsn)
    file_times: dict[str, float] = {}
    starts: dict[str, float] = {}
    spans: list[dict] = []
    t = time.monotonic()   # reset just before the runner starts

    def progress(kind, mid):
        if kind == "apply":
            starts[mid] = time.monotonic()
            mon.current_file = mid
        elif kind == "applied" and mid in starts:
            end = time.monotonic()
            file_times[mid] = round(end - starts[mid], 3)
            spans.append({"file": mid, "start_s": round(starts[mid] - t, 4),
                          "end_s": round(end - t, 4)})

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
    ops = sorted(by_op)
    series = sorted((started - t, dt, op) for dt, op, started in lat)
    return {
        "migration_s": elapsed,
        "file_times": file_times,
        "file_spans": spans,
        "app_ops": app.stats.ops,
        "app_errors": app.stats.errors[:20],
        "app_error_count": len(app.stats.errors),
        "app_worst_latency_s": worst[0],
        "app_worst_op": worst[1],
        "app_p99_latency_s": p99,
        "app_worst_by_op": by_op,
        # every app statement: when it started, how long it took, which op (an index
        # into "ops"); columns, not rows, to keep a 1M report small
        "latency_series": {"ops": ops,
                           "t_s": [round(x[0], 4) for x in series],
                           "latency_s": [round(x[1], 5) for x in series],
                           "op": [ops.index(x[2]) for x in series]},
        "failures": [{"t_s": round(t0 - t, 4), "op": op, "latency_s": round(dt, 5)}
                     for t0, op, dt in sorted(app.stats.failures)],
        "reader_transactions": app.stats.reader_transactions,
        "reader_held_s": round(app.stats.reader_held_s, 1),
        **lock_retry_time(out.lines),
        "max_blocking_lock_s": worst_ep["blocked_s"] if worst_ep else 0.0,
        "worst_blocking": worst_ep,
        "blocking_episodes": sorted(mon.episodes.values(), key=lambda e: -e["blocked_s"])[:15],
        "monitor_samples": mon.samples,
        "notices": [l for l in out.lines if "unmapped" not in l][-60:],
    }
