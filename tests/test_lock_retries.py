"""A long-running reader never turns apply into an application outage.

A report opened by the application sits idle in a transaction holding ACCESS
SHARE on LabSession. V0006 needs ACCESS EXCLUSIVE on LabSession: its request
queues behind the reader, and every application statement on LabSession queues
behind the request. The harness waits at most ``lock_timeout`` (100ms) per
attempt, rolls back, backs off with jitter and tries again, so the application
is stalled at most about that long per attempt; it succeeds once the reader
ends, and when the reader never ends it stops at the recorded version (exit 3)
naming the reader. The application here is real: a LOGIN member of forgea_app
timing its own reads on its own connection while the harness runs.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from harness import apply as A
from harness.errors import LockNotGranted

REPO = Path(__file__).resolve().parent.parent
V0005 = "V0005__lab_version_guards"
V0006 = "V0006__lab_session_columns_and_verification_attempt"
#: what "about the lock_timeout" allows on a shared 2-core machine: 100ms of
#: lock_timeout plus scheduling noise; the old behaviour stalled for seconds
STALL_BOUND_S = 0.6


class AppReads:
    """The application reading LabSession every 20 ms, timing each read."""

    def __init__(self, db):
        self.conn = db.connect("app")
        self.conn.execute("SET lock_timeout = 0")
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            self.conn.execute('SELECT count(*) FROM "LabSession"').fetchone()
            self.latencies.append(time.monotonic() - t0)
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


def long_reader(db):
    """The report: a transaction idle after reading LabSession (ACCESS SHARE held).
    Its query has a parameter, as the app's queries do: through the extended
    protocol it leaves the idle transaction with a snapshot (backend_xmin), which
    CREATE INDEX CONCURRENTLY waits for."""
    reader = psycopg.connect(db.dsn("app"), autocommit=False, application_name="nightly-report")
    db._conns.append(reader)
    reader.execute('SELECT count(*) FROM "LabSession" WHERE "startedAt" > %s',
                   ("2000-01-01",)).fetchone()
    return reader, reader.info.backend_pid


def names_the_reader(text: str, pid: int) -> bool:
    """The report names the reader: pid, application, role and the lock it holds
    (its state needs pg_read_all_stats, which the migration role lacks here)."""
    return (f"pid {pid} (application_name 'nightly-report', user 'app_login'" in text
            and 'AccessShareLock on "LabSession"' in text)


@pytest.fixture
def at_the_lab_version_guards(baseline_db, sql_root):
    A.apply(baseline_db.dsn(), to=V0005, sql_root=sql_root)
    return baseline_db


def test_app_is_not_stalled_beyond_the_lock_timeout_and_apply_succeeds_when_the_reader_ends(
        at_the_lab_version_guards, sql_root):
    db = at_the_lab_version_guards
    reader, reader_pid = long_reader(db)
    err = io.StringIO()
    result: dict = {}

    def run():
        try:
            result["r"] = A.apply(db.dsn(), to=V0006, sql_root=sql_root, err=err)
        except Exception as e:   # reported by the assertions below
            result["e"] = e

    with AppReads(db) as app:
        t = threading.Thread(target=run)
        t0 = time.monotonic()
        t.start()
        time.sleep(3.0)           # the report runs for 3 s while apply keeps trying
        reader.commit()
        t.join(120)
        elapsed = time.monotonic() - t0
    assert "e" not in result, result.get("e")
    assert result["r"].applied == [V0006]
    log = err.getvalue()
    assert "lock not available within lock_timeout 100ms" in log
    assert "blocked by " in log and names_the_reader(log, reader_pid), log
    print(f"app reads: {len(app.latencies)}, worst {app.worst:.3f}s; apply {elapsed:.1f}s; "
          f"retries {log.count('lock not available')}")
    assert len(app.latencies) > 50
    assert app.worst < STALL_BOUND_S, f"the app was stalled {app.worst:.3f}s"
    assert A.status(db.dsn(), sql_root)["current"] == V0006


def test_apply_reports_clearly_when_the_lock_window_never_comes(at_the_lab_version_guards, sql_root):
    db = at_the_lab_version_guards
    reader, reader_pid = long_reader(db)
    try:
        with AppReads(db) as app:
            with pytest.raises(LockNotGranted) as e:
                A.apply(db.dsn(), to=V0006, sql_root=sql_root, lock_retries=3,
                        retry_max_delay=0.2, err=io.StringIO())
            env = dict(os.environ, HARNESS_SQL_ROOT=str(sql_root))
            p = subprocess.run([sys.executable, "-m", "harness.cli", "apply", "--target",
                                db.dsn(), "--to", V0006, "--lock-retries", "2",
                                "--lock-retry-max-delay", "0.2"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        text = e.value.render()
        assert e.value.exit_code == 3 and e.value.sqlstate == "55P03"
        assert f"apply stopped at {V0005}" in text and f"applying {V0006}" in text
        assert "not granted in 4 attempt(s)" in text and "lock_timeout 100ms each" in text
        assert names_the_reader(text, reader_pid), text
        assert f"nothing of {V0006} was committed" in text
        assert "pg_terminate_backend" in text
        assert p.returncode == 3, p.stderr
        assert f"apply stopped at {V0005}" in p.stderr and names_the_reader(p.stderr, reader_pid)
        assert "Traceback" not in p.stderr
        assert app.worst < STALL_BOUND_S, f"the app was stalled {app.worst:.3f}s"
    finally:
        reader.rollback()
    st = A.status(db.dsn(), sql_root)
    assert st["current"] == V0005 and st["pending"][0]["id"] == V0006
    assert st["incomplete"] == []
    owner = db.connect()
    assert owner.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = "
                         "'\"LabSession\"'::regclass AND attname = 'labVersionId'"
                         ).fetchone()[0] == 0
    assert A.apply(db.dsn(), to=V0006, sql_root=sql_root).applied == [V0006]


def test_create_index_concurrently_waits_for_the_reader_without_stalling_the_app(
        baseline_db, sql_root):
    """V0013's CREATE INDEX CONCURRENTLY waits for the open report, but holds only
    SHARE UPDATE EXCLUSIVE: it runs under the concurrent lock_timeout instead of
    being rebuilt every 100ms, and the application is not stalled meanwhile."""
    db = baseline_db
    A.apply(db.dsn(), to="V0012__lab_session_version_not_null", sql_root=sql_root)
    reader, _pid = long_reader(db)
    err = io.StringIO()
    result: dict = {}

    def run():
        try:
            result["r"] = A.apply(db.dsn(), to="V0013", sql_root=sql_root, err=err)
        except Exception as e:   # reported by the assertions below
            result["e"] = e

    with AppReads(db) as app:
        t = threading.Thread(target=run)
        t.start()
        time.sleep(2.0)
        assert t.is_alive()      # the build waits for the report
        reader.commit()
        t.join(120)
    assert "e" not in result, result.get("e")
    assert result["r"].applied == ["V0013__lab_session_one_active"]
    assert "lock not available" not in err.getvalue() and "INVALID" not in err.getvalue()
    assert app.worst < STALL_BOUND_S, f"the app was stalled {app.worst:.3f}s"
    assert db.connect().execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = "
        "to_regclass('\"LabSession_userId_labId_active_key\"')").fetchone() == (True,)


def test_lock_options_and_their_defaults_are_in_help():
    for cmd in ("apply", "rollback"):
        out = subprocess.run([sys.executable, "-m", "harness.cli", cmd, "--help"], cwd=REPO,
                             capture_output=True, text=True, timeout=60).stdout
        flat = " ".join(out.split())
        assert "--lock-timeout" in out and "[default: 100ms]" in flat
        assert "--lock-retries" in out and "[default: 150;" in flat
        assert "--lock-retry-max-delay" in out and "[default: 2.0;" in flat
        assert "--concurrent-lock-timeout" in out and "[default: 5min]" in flat


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    r = A.LockRetry(retries=10, max_delay=2.0)
    for n in range(1, 11):
        d = min(2.0, 0.1 * 2 ** (n - 1))
        samples = [r.delay(n) for _ in range(200)]
        assert all(d / 2 <= s <= d for s in samples)
        assert len({round(s, 6) for s in samples}) > 100    # jittered
