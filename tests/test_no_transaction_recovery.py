"""A no-transaction file never leaves the schema and the bookkeeping disagreeing.

Its statements commit one by one, so the harness records it as in progress
(``_harness_migration.state`` = 'applying' / 'rolling_back') before the first one
and as complete (applied / gone) after the last. Failures are injected for real:
a second session holds a lock on a bookkeeping table so that the final bookkeeping
write hits lock_timeout after every statement has committed, or the harness is
killed between statements. ``status`` then shows the file as incomplete (not
applied), and the next ``apply`` / ``rollback`` redoes or finishes it.
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

from harness import servers
from harness import apply as A
from harness import verify as V
from harness.errors import MigrationFailed
from tests.test_apply import _start_cli_apply, _wait_sleeping, copy_tree, plant

REPO = Path(__file__).resolve().parent.parent
V0012 = "V0012__lab_session_version_not_null"
V0013 = "V0013__lab_session_one_active"
INDEX = '"LabSession_userId_labId_active_key"'


def ids(items):
    return [i["id"] for i in items]


def index_state(conn, name=INDEX):
    """None when the index is absent, else (indisvalid, indisready)."""
    return conn.execute("SELECT indisvalid, indisready FROM pg_index "
                        "WHERE indexrelid = to_regclass(%s)", (name,)).fetchone()


def records(conn, mid):
    """(yoyo marks, harness row state or None) of one migration."""
    marks = conn.execute(f"SELECT count(*) FROM {A.bk(A.MIGRATION_TABLE)} "
                         "WHERE migration_id = %s", (mid,)).fetchone()[0]
    row = conn.execute(f"SELECT state FROM {A.bk(A.HARNESS_TABLE)} WHERE migration_id = %s",
                       (mid,)).fetchone()
    return marks, row[0] if row else None


def hold_bookkeeping(db):
    """A session whose SHARE lock on harness._yoyo_migration lets readers through but
    makes any write to it (mark, unmark) wait, i.e. hit lock_timeout."""
    blocker = db.connect(autocommit=False)
    blocker.execute(f"LOCK TABLE {A.bk(A.MIGRATION_TABLE)} IN SHARE MODE")
    return blocker


@pytest.fixture
def few_retries(monkeypatch):
    from harness import lock_retry
    monkeypatch.setattr(lock_retry, "MAX_LOCK_RETRIES", 1)
    monkeypatch.setattr(lock_retry, "RETRY_BASE_DELAY", 0.05)


def cli(*args, sql_root=None):
    env = dict(os.environ, HARNESS_SQL_ROOT=str(sql_root)) if sql_root else None
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def interrupted_rollback_of_the_one_active_index(db, sql_root):
    """Roll back to V0013, then roll V0013 back while its bookkeeping write times out."""
    dsn = db.dsn()
    A.rollback(dsn, to="V0013", sql_root=sql_root)
    conn = db.connect()
    assert index_state(conn) == (True, True)
    blocker = hold_bookkeeping(db)
    try:
        with pytest.raises(MigrationFailed) as e:
            A.rollback(dsn, steps=1, sql_root=sql_root, lock_timeout="200ms")
    finally:
        blocker.rollback()
    return e.value


def assert_incomplete(db, sql_root, mid, operation):
    st = A.status(db.dsn(), sql_root)
    assert [(i["id"], i["operation"]) for i in st["incomplete"]] == [(mid, operation)]
    assert mid not in ids(st["applied"])
    first = st["pending"][0]
    assert first["id"] == mid and first["incomplete"] == operation
    return st


# ------------------------------------------------------------------ rollback side


def test_rollback_whose_bookkeeping_fails_after_drop_index_concurrently_is_incomplete(
        db, sql_root, few_retries):
    err = interrupted_rollback_of_the_one_active_index(db, sql_root)
    # the error names the bookkeeping table and says what already committed
    assert err.sqlstate == "55P03"
    assert 'writing the bookkeeping (harness."_yoyo_migration") failed' in err.message
    text = err.render()
    assert f"every statement of sql/rollback/{V0013}.sql committed" in text
    assert "recorded as incomplete (rolling_back)" in text
    conn = db.connect()
    assert index_state(conn) is None                       # the drop committed
    assert records(conn, V0013) == (1, "rolling_back")     # the mark is still there
    st = assert_incomplete(db, sql_root, V0013, "rollback")
    assert ids(st["applied"])[-1] == V0012                 # V0013 no longer counts
    # the CLI says so, in JSON and in text, and exits 1
    p = cli("status", "--json", "--target", db.dsn(), sql_root=sql_root)
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert [(i["id"], i["operation"]) for i in out["incomplete"]] == [(V0013, "rollback")]
    assert V0013 not in ids(out["applied"])
    p = cli("status", "--target", db.dsn(), sql_root=sql_root)
    assert p.returncode == 1 and "INCOMPLETE (1)" in p.stdout
    assert f"{V0013}  interrupted rollback" in p.stdout
    rep = V.verify(db.dsn(), sql_root=sql_root, require_complete=False)
    assert any(V0013 in " ".join(f.get("rows", [])) and f["severity"] == "fail"
               for f in rep.by_name("migration_chain").findings), V.render_table(rep)


def test_next_rollback_finishes_an_interrupted_rollback(db, sql_root, few_retries):
    interrupted_rollback_of_the_one_active_index(db, sql_root)
    r = A.rollback(db.dsn(), steps=1, sql_root=sql_root)
    assert r.rolled_back == [V0013]
    conn = db.connect()
    assert index_state(conn) is None
    assert records(conn, V0013) == (0, None)
    st = A.status(db.dsn(), sql_root)
    assert st["incomplete"] == [] and ids(st["applied"])[-1] == V0012
    assert ids(st["pending"])[0] == V0013 and st["pending"][0]["incomplete"] is None


def test_rollback_cannot_keep_an_incomplete_file_as_last_version(db, sql_root, few_retries):
    interrupted_rollback_of_the_one_active_index(db, sql_root)
    with pytest.raises(A.UsageError) as e:
        A.rollback(db.dsn(), to="V0013", sql_root=sql_root)
    assert "incomplete (interrupted rollback)" in e.value.message
    assert records(db.connect(), V0013) == (1, "rolling_back")


def test_next_apply_redoes_an_interrupted_rollback_and_the_index_is_back(
        db, sql_root, few_retries):
    interrupted_rollback_of_the_one_active_index(db, sql_root)
    r = A.apply(db.dsn(), sql_root=sql_root)
    assert r.applied[0] == V0013 and r.applied[-1] == A.load_chain(sql_root)[-1].id
    conn = db.connect()
    assert index_state(conn) == (True, True)
    assert records(conn, V0013) == (1, "applied")
    st = A.status(db.dsn(), sql_root)
    assert st["incomplete"] == [] and st["pending"] == []
    assert V.verify(db.dsn(), sql_root=sql_root).ok


def test_plan_sql_finishes_an_interrupted_rollback_then_applies(db, sql_root, few_retries):
    interrupted_rollback_of_the_one_active_index(db, sql_root)
    p = cli("plan", "--target", db.dsn(), "--to", "V0013", "--sql", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    script = p.stdout
    finish = script.index("its rollback was interrupted")
    start = script.index("'applying')", finish)
    assert finish < start < script.index("CREATE UNIQUE INDEX CONCURRENTLY", start)
    psql = str(servers.find_bin_dir(18) / "psql")  # the embedded 18 always has one
    r = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.dsn(), "-f", "-"],
                       input=script, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    conn = db.connect()
    assert index_state(conn) == (True, True) and records(conn, V0013) == (1, "applied")
    st = A.status(db.dsn(), sql_root)
    assert st["incomplete"] == [] and ids(st["applied"])[-1] == V0013


# ------------------------------------------------------------------ apply side


def test_apply_whose_bookkeeping_fails_after_create_index_concurrently_is_incomplete(
        db, sql_root, few_retries):
    dsn = db.dsn()
    A.rollback(dsn, to="V0012", sql_root=sql_root)
    conn = db.connect()
    blocker = hold_bookkeeping(db)
    try:
        with pytest.raises(MigrationFailed) as e:
            A.apply(dsn, to="V0013", sql_root=sql_root, lock_timeout="200ms")
    finally:
        blocker.rollback()
    assert e.value.sqlstate == "55P03" and 'harness."_yoyo_migration"' in e.value.message
    assert f"every statement of sql/migrations/{V0013}.sql committed" in e.value.render()
    assert index_state(conn) == (True, True)              # the build committed
    assert records(conn, V0013) == (0, "applying")        # but it is not applied
    assert_incomplete(db, sql_root, V0013, "apply")
    # rollback undoes what it committed
    assert A.rollback(dsn, steps=1, sql_root=sql_root).rolled_back == [V0013]
    assert index_state(conn) is None and records(conn, V0013) == (0, None)
    st = A.status(dsn, sql_root)
    assert st["incomplete"] == [] and ids(st["applied"])[-1] == V0012


def test_killed_during_a_no_transaction_file_it_is_incomplete_and_apply_redoes_it(
        db, sql_root, tmp_path):
    root = copy_tree(sql_root, tmp_path)
    mid = "V9990__no_tx_slow"
    plant(root, mid,
          "-- planted slow no-transaction file\n-- harness: no-transaction\n"
          'CREATE TABLE IF NOT EXISTS "NoTxProbe" (id int);\n'
          "SELECT pg_sleep(CASE WHEN current_setting('harness_test.sleep', true) = 'on' "
          "THEN 30 ELSE 0 END);\n"
          'INSERT INTO "NoTxProbe" SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM "NoTxProbe");\n',
          '-- rollback\nDROP TABLE IF EXISTS "NoTxProbe";\n')
    proc = _start_cli_apply(db.dsn(), root)
    su = db.connect("superuser")
    try:
        backend = _wait_sleeping(su, db.name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    su.execute("SELECT pg_terminate_backend(%s)", (backend,))
    deadline = time.monotonic() + 10
    while su.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    conn = db.connect()
    # the first statement committed; the bookkeeping says the file is in progress
    assert conn.execute("""SELECT to_regclass('"NoTxProbe"')""").fetchone()[0] is not None
    assert records(conn, mid) == (0, "applying")
    assert_incomplete(db, root, mid, "apply")
    r = A.apply(db.dsn(), sql_root=root)
    assert r.applied == [mid]
    assert conn.execute('SELECT count(*) FROM "NoTxProbe"').fetchone()[0] == 1
    assert records(conn, mid) == (1, "applied")
    assert A.status(db.dsn(), root)["incomplete"] == []


def test_bookkeeping_of_an_earlier_harness_gains_the_state_column(baseline_db, sql_root):
    from tests.test_bookkeeping import make_legacy
    conn = baseline_db.connect()
    make_legacy(conn)
    assert A.status(baseline_db.dsn(), sql_root)["incomplete"] == []
    A.apply(baseline_db.dsn(), to="V0003", sql_root=sql_root)
    assert conn.execute(f"SELECT array_agg(DISTINCT state) FROM {A.bk(A.HARNESS_TABLE)}"
                        ).fetchone()[0] == ["applied"]
