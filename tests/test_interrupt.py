"""SIGINT and SIGTERM stop a run with the same account as every other stop.

``harness apply`` runs as a real subprocess against a production-like database
(tests: ``harness.datagen`` rows on the adopted baseline) big enough that the
session backfill, a no-transaction file that commits per batch, takes seconds.
The signal arrives while that backfill runs, after at least one batch committed:
the harness cancels the statement, says where the database is (the last applied
version, the file under way and that it is incomplete, that `harness apply`
resumes it) and exits 130 (SIGINT) or 143 (SIGTERM). The next ``apply``
completes the chain from there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import apply as A
from harness import datagen
from harness.errors import EXIT_SIGINT, EXIT_SIGTERM
from tests.chain_ids import CHAIN
from tests.conftest import _fresh_db

REPO = Path(__file__).resolve().parent.parent
#: LabSession rows: the backfill updates them in batches of 5000, a few seconds in all
SCALE = 15_000
BACKFILL = CHAIN["session_backfill"]


def harness_env(sql_root) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k != "DATABASE_URL"}
    env["HARNESS_SQL_ROOT"] = str(sql_root)
    return env


def start_apply(dsn, sql_root, *args):
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "apply", "--target", dsn,
                             *args], cwd=REPO, env=harness_env(sql_root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(*args, sql_root, timeout=600):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO,
                          env=harness_env(sql_root), capture_output=True, text=True,
                          timeout=timeout)


def backfilled(conn) -> int:
    return conn.execute('SELECT count(*) FROM "LabSession" WHERE "labVersionId" IS NOT NULL'
                        ).fetchone()[0]


def wait_for_backfill_batches(proc, conn, timeout=300) -> int:
    """Wait until the backfill is recorded as in progress, its CALL runs and at
    least one batch has committed; the number of sessions filled so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("apply ended before the backfill ran:\n"
                                 + proc.stderr.read())
        state = conn.execute(f"SELECT state FROM {A.bk(A.HARNESS_TABLE)} "
                             "WHERE migration_id = %s", (BACKFILL,)).fetchone() \
            if conn.execute("SELECT to_regclass(%s)", (A.bk(A.HARNESS_TABLE),)
                            ).fetchone()[0] else None
        if state == ("applying",) and conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = "
                "current_database() AND application_name = 'harness' AND state = 'active' "
                "AND query ILIKE 'CALL %%')").fetchone()[0]:
            done = backfilled(conn)
            if done:
                return done
        time.sleep(0.05)
    raise AssertionError("the backfill never committed a batch")


@pytest.fixture(scope="module")
def tmpl_loaded(pg_cluster, tmpl_baseline):
    """A template: production adopted at the baseline, with SCALE sessions and their
    logs (generated once for the module; each test clones it)."""
    with _fresh_db(pg_cluster, tmpl_baseline, "tmpl_loaded") as built:
        datagen.generate(built.dsn(), SCALE)
        built.close()
        with pg_cluster.connect() as su:
            su.execute(f'ALTER DATABASE "{built.name}" WITH IS_TEMPLATE true')
        try:
            yield built.name
        finally:
            with pg_cluster.connect() as su:
                su.execute(f'ALTER DATABASE "{built.name}" WITH IS_TEMPLATE false')


@pytest.fixture
def loaded_baseline_db(pg_cluster, tmpl_loaded):
    with _fresh_db(pg_cluster, tmpl_loaded, "loaded") as clone:
        yield clone


def interrupt_backfill(db, sql_root, sig, *args):
    """Start apply, send ``sig`` while the backfill commits its batches; the
    finished process's (returncode, stderr) and the sessions filled before."""
    files = A.load_chain(sql_root)
    assert next(f for f in files if f.id == BACKFILL).no_transaction
    conn = db.connect()
    proc = start_apply(db.dsn(), sql_root, *args)
    try:
        before = wait_for_backfill_batches(proc, conn)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, before


def previous_of(sql_root, mid: str) -> str:
    ids = [f.id for f in A.load_chain(sql_root)]
    return ids[ids.index(mid) - 1]


def assert_stop_report(err: str, sql_root, signal_name: str) -> None:
    assert "Traceback" not in err, err
    assert f"apply stopped at {previous_of(sql_root, BACKFILL)}" in err, err
    assert f"interrupted by {signal_name} while applying {BACKFILL}" in err, err
    assert f"statements of sql/migrations/{BACKFILL}.sql completed before statement" in err
    assert f"{BACKFILL} is incomplete (interrupted apply)" in err, err
    assert "run `harness apply` again to resume" in err, err


@pytest.mark.slow
def test_sigint_during_a_batched_backfill_exits_130_naming_the_version_and_apply_resumes(
        loaded_baseline_db, sql_root):
    db = loaded_baseline_db
    code, err, before = interrupt_backfill(db, sql_root, signal.SIGINT)
    assert code == EXIT_SIGINT, err
    assert_stop_report(err, sql_root, "SIGINT")
    conn = db.connect()
    # the batches that committed stay, the file is recorded as in progress
    assert before <= backfilled(conn) < SCALE
    st = A.status(db.dsn(), sql_root)
    assert [(i["id"], i["operation"]) for i in st["incomplete"]] == [(BACKFILL, "apply")]
    assert st["current"] == previous_of(sql_root, BACKFILL)
    # no session of the interrupted run is left behind on the server (a backend whose
    # client has gone ends a moment later: allowed 10 s on a loaded machine)
    deadline = time.monotonic() + 10
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND application_name = 'harness'"
                       ).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND application_name = 'harness'"
                        ).fetchone()[0] == 0
    # the next apply finishes the backfill and the rest of the chain
    p = run_cli("apply", "--target", db.dsn(), sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    assert f"{BACKFILL}: its apply was interrupted" in p.stderr
    assert backfilled(conn) == SCALE
    p = run_cli("status", "--target", db.dsn(), "--json", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["pending"] == [] and st["incomplete"] == []
    assert [a["id"] for a in st["applied"]] == [f.id for f in A.load_chain(sql_root)]


@pytest.mark.slow
def test_sigterm_during_a_batched_backfill_exits_143_with_the_same_report(
        loaded_baseline_db, sql_root):
    db = loaded_baseline_db
    code, err, _before = interrupt_backfill(db, sql_root, signal.SIGTERM, "--to", BACKFILL)
    assert code == EXIT_SIGTERM, err
    assert_stop_report(err, sql_root, "SIGTERM")
    p = run_cli("apply", "--target", db.dsn(), "--to", BACKFILL, sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    st = A.status(db.dsn(), sql_root)
    assert st["incomplete"] == [] and st["current"] == BACKFILL
    assert backfilled(db.connect()) == SCALE


def test_sigint_while_waiting_for_the_migration_lock_exits_130_and_changes_nothing(
        baseline_db, sql_root):
    db = baseline_db
    before = A.status(db.dsn(), sql_root)
    holder = db.connect()
    holder.execute("SELECT pg_advisory_lock(%s::bigint)", (A.LOCK_KEY,))
    proc = start_apply(db.dsn(), sql_root, "--lock-wait", "120")
    try:
        deadline = time.monotonic() + 60
        while not holder.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = "
                "current_database() AND application_name = 'harness')").fetchone()[0]:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)     # inside the wait for the lock
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_SIGINT, err
    assert "Traceback" not in err
    assert (f"apply stopped at {before['current']}: interrupted by SIGINT before its first "
            "file") in err, err
    assert "this run committed no file" in err
    assert f"the database is now at {before['current']}" in err
    after = A.status(db.dsn(), sql_root)
    assert after["applied"] == before["applied"] and after["incomplete"] == []
