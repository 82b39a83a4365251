"""apply / rollback / status: atomic bookkeeping, drift, locking, crash recovery."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import apply as A
from harness import catalog, chain
from harness.errors import DriftError, LockHeld, MigrationFailed, UsageError

REPO = Path(__file__).resolve().parent.parent


def copy_tree(sql_root, tmp_path) -> Path:
    dst = tmp_path / "sql"
    shutil.copytree(sql_root, dst)
    return dst


def plant(root: Path, name: str, sql: str, rollback: str = "-- rollback\nSELECT 1;\n",
          folder: str = "migrations") -> None:
    (root / folder / f"{name}.sql").write_text(sql)
    (root / "rollback" / f"{name}.sql").write_text(rollback)


def ids(items):
    return [i["id"] for i in items]


def last_version(sql_root) -> str:
    return chain.load_chain(sql_root)[-1].id


def advisory_holders(conn):
    return conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                        (A.LOCK_KEY,)).fetchall()


def test_apply_rollback_to_baseline_apply_gives_identical_catalog(empty_db, sql_root):
    dsn = empty_db.dsn()
    A.apply(dsn, sql_root=sql_root)
    conn = empty_db.connect()
    first = catalog.snapshot(conn)
    r = A.rollback(dsn, to="V0001", sql_root=sql_root)
    assert r.rolled_back and "V0001__baseline" not in r.rolled_back
    assert ids(A.status(dsn, sql_root)["applied"]) == ["V0001__baseline"]
    A.apply(dsn, sql_root=sql_root)
    assert catalog.diff(first, catalog.snapshot(conn), column_order=True) == []
    st = A.status(dsn, sql_root)
    assert st["pending"] == [] and st["drift"] == []


def test_status_shape_lists_applied_and_pending_oldest_first(baseline_db, sql_root):
    st = A.status(baseline_db.dsn(), sql_root)
    assert set(st) >= {"applied", "pending", "drift"}
    assert ids(st["applied"]) == ["V0001__baseline", "V0002__roles_and_archive"]
    all_ids = [f.id for f in chain.load_chain(sql_root)]
    assert ids(st["applied"]) + ids(st["pending"]) == all_ids
    for a in st["applied"]:
        assert len(a["checksum"]) == 64 and a["applied_at"]
    # baseline_db is production: its baseline was adopted, V0002 ran
    assert [a["adopted"] for a in st["applied"]] == [True, False]
    assert st["drift"] == []


def test_status_of_a_database_without_bookkeeping_changes_nothing(empty_db, sql_root):
    st = A.status(empty_db.dsn(), sql_root)
    assert st["applied"] == [] and len(st["pending"]) == len(chain.load_chain(sql_root))
    conn = empty_db.connect()
    assert A.bookkeeping_tables(conn) == {}
    assert conn.execute("SELECT to_regnamespace(%s)", (A.BOOKKEEPING_SCHEMA,)).fetchone()[0] \
        is None


def test_apply_to_and_dry_run(empty_db, sql_root):
    dsn = empty_db.dsn()
    r = A.apply(dsn, to="V0002", dry_run=True, sql_root=sql_root)
    assert r.planned == ["V0001__baseline", "V0002__roles_and_archive"] and not r.applied
    conn = empty_db.connect()
    assert conn.execute("SELECT to_regclass('\"User\"')").fetchone()[0] is None
    assert A.bookkeeping_tables(conn) == {}
    r = A.apply(dsn, to="V0002", sql_root=sql_root)
    assert r.applied == ["V0001__baseline", "V0002__roles_and_archive"]
    assert ids(A.status(dsn, sql_root)["applied"]) == ["V0001__baseline", "V0002__roles_and_archive"]


def test_rollback_to_keeps_target_applied_and_steps_rolls_back_newest(db, sql_root):
    dsn = db.dsn()
    files = chain.load_chain(sql_root)
    r = A.rollback(dsn, steps=2, sql_root=sql_root)
    assert r.rolled_back == [files[-1].id, files[-2].id]
    r = A.rollback(dsn, to="V0002", sql_root=sql_root)
    assert ids(A.status(dsn, sql_root)["applied"]) == ["V0001__baseline", "V0002__roles_and_archive"]
    with pytest.raises(UsageError):
        A.rollback(dsn, sql_root=sql_root)


def test_each_migration_and_its_records_commit_together(db, sql_root, tmp_path):
    root = copy_tree(sql_root, tmp_path)
    plant(root, "V9990__fails_half_way",
          '-- plant\nCREATE TABLE "HalfWay" (id int);\nSELECT 1/0;\n')
    with pytest.raises(MigrationFailed) as e:
        A.apply(db.dsn(), sql_root=root)
    assert e.value.sqlstate == "22012"
    assert "V9990__fails_half_way.sql" in e.value.render()
    conn = db.connect()
    assert conn.execute("""SELECT to_regclass('"HalfWay"')""").fetchone()[0] is None
    for table in ("_yoyo_migration", "_harness_migration"):
        assert conn.execute(f"SELECT count(*) FROM {A.bk(table)} WHERE migration_id = "
                            "'V9990__fails_half_way'").fetchone()[0] == 0
    assert ids(A.status(db.dsn(), root)["pending"]) == ["V9990__fails_half_way"]


def test_edited_file_is_reported_as_drift_and_stops_apply(db, sql_root, tmp_path):
    root = copy_tree(sql_root, tmp_path)
    plant(root, "V9990__later", "-- later\nCREATE TABLE \"Later\" (id int);\n")
    edited = root / "migrations" / "V0002__roles_and_archive.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    st = A.status(db.dsn(), root)
    assert ids(st["drift"]) == ["V0002__roles_and_archive"]
    with pytest.raises(DriftError) as e:
        A.apply(db.dsn(), sql_root=root)
    assert "V0002__roles_and_archive.sql" in e.value.render() and e.value.exit_code == 3
    conn = db.connect()
    assert conn.execute("""SELECT to_regclass('"Later"')""").fetchone()[0] is None


def test_lock_timeout_failures_are_retried_with_backoff(db, sql_root, tmp_path, capsys):
    root = copy_tree(sql_root, tmp_path)
    plant(root, "V9990__needs_lock", '-- plant\nALTER TABLE "Lab" ADD COLUMN "probe" int;\n')
    blocker = db.connect(autocommit=False)
    blocker.execute('LOCK TABLE "Lab" IN ACCESS EXCLUSIVE MODE')
    threading.Timer(1.2, blocker.rollback).start()
    r = A.apply(db.dsn(), sql_root=root, lock_timeout="200ms")
    assert r.applied == ["V9990__needs_lock"]
    err = capsys.readouterr().err
    assert "55P03" in err and f"retry 1/{A.MAX_LOCK_RETRIES}" in err


def test_second_apply_waits_then_refuses_naming_the_holder(db, sql_root, tmp_path):
    root = copy_tree(sql_root, tmp_path)
    plant(root, "V9990__later", "-- later\nCREATE TABLE \"Later\" (id int);\n")
    holder = db.connect()
    pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
    holder.execute("SELECT pg_advisory_lock(%s::bigint)", (A.LOCK_KEY,))
    t0 = time.monotonic()
    with pytest.raises(LockHeld) as e:
        A.apply(db.dsn(), sql_root=root, lock_wait=1)
    assert time.monotonic() - t0 >= 1
    assert f"pid {pid}" in e.value.message and e.value.exit_code == 3
    assert db.connect().execute("""SELECT to_regclass('"Later"')""").fetchone()[0] is None
    holder.execute("SELECT pg_advisory_unlock(%s::bigint)", (A.LOCK_KEY,))
    assert A.apply(db.dsn(), sql_root=root, lock_wait=1).applied == ["V9990__later"]
    assert advisory_holders(db.connect()) == []


SLOW = ("-- planted slow migration\n"
        "CREATE TABLE \"SlowProbe\" (id int);\n"
        "SELECT pg_sleep(CASE WHEN current_setting('harness_test.sleep', true) = 'on' "
        "THEN 30 ELSE 0 END);\n"
        "INSERT INTO \"SlowProbe\" VALUES (1);\n")


def _start_cli_apply(dsn, root):
    env = dict(os.environ, HARNESS_SQL_ROOT=str(root))
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "apply", "--target",
         dsn + ("&" if "?" in dsn else "?") + "options=-c%20harness_test.sleep%3Don",
         "--lock-wait", "1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_sleeping(conn, dbname, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                           "application_name = 'harness' AND query LIKE '%%pg_sleep%%' "
                           "AND state = 'active'", (dbname,)).fetchone()
        if row:
            return row[0]
        time.sleep(0.1)
    raise AssertionError("the planted migration never started")


def test_killed_harness_leaves_nothing_half_applied_and_rerun_recovers(db, sql_root, tmp_path):
    root = copy_tree(sql_root, tmp_path)
    plant(root, "V9990__slow", SLOW)
    proc = _start_cli_apply(db.dsn(), root)
    su = db.connect("superuser")
    try:
        backend = _wait_sleeping(su, db.name)
        # meanwhile a second apply neither interleaves nor waits forever
        t0 = time.monotonic()
        with pytest.raises(LockHeld) as e:
            A.apply(db.dsn(), sql_root=root, lock_wait=1)
        assert f"pid {backend}" in e.value.message and time.monotonic() - t0 < 10
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
    assert conn.execute("""SELECT to_regclass('"SlowProbe"')""").fetchone()[0] is None
    assert advisory_holders(conn) == []
    assert ids(A.status(db.dsn(), root)["pending"]) == ["V9990__slow"]
    r = A.apply(db.dsn(), sql_root=root, lock_wait=1)
    assert r.applied == ["V9990__slow"]
    assert conn.execute('SELECT count(*) FROM "SlowProbe"').fetchone()[0] == 1
    assert advisory_holders(conn) == []


def test_no_transaction_file_drops_invalid_index_before_rerun(db, sql_root, tmp_path):
    root = copy_tree(sql_root, tmp_path)
    plant(root, "V9990__concurrent_index",
          "-- plant\n-- harness: no-transaction\n"
          'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Probe_key" ON "Probe" ("k");\n',
          '-- rollback\n-- harness: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS "Probe_key";\n')
    conn = db.connect()
    conn.execute('CREATE TABLE "Probe" ("k" int)')
    conn.execute('INSERT INTO "Probe" VALUES (1), (1)')
    with pytest.raises(MigrationFailed) as e:
        A.apply(db.dsn(), sql_root=root)
    assert e.value.sqlstate == "23505"
    valid = conn.execute("""SELECT indisvalid FROM pg_index
                            WHERE indexrelid = to_regclass('"Probe_key"')""").fetchone()
    assert valid == (False,)        # what an interrupted CIC leaves behind
    conn.execute('DELETE FROM "Probe" WHERE ctid = (SELECT max(ctid) FROM "Probe")')
    assert A.apply(db.dsn(), sql_root=root).applied == ["V9990__concurrent_index"]
    assert conn.execute("""SELECT indisvalid FROM pg_index
                           WHERE indexrelid = to_regclass('"Probe_key"')""").fetchone() == (True,)
    assert A.rollback(db.dsn(), steps=1, sql_root=root).rolled_back == ["V9990__concurrent_index"]
    assert conn.execute("""SELECT to_regclass('"Probe_key"')""").fetchone()[0] is None


def test_notices_are_printed_and_preflight_detail_shown(db, sql_root, tmp_path, capsys):
    root = copy_tree(sql_root, tmp_path)
    plant(root, "V9990__preflight",
          "-- plant\nDO $$ BEGIN RAISE NOTICE 'checking rows'; "
          "RAISE EXCEPTION 'pre-flight failed: 2 bad rows' USING ERRCODE = 'FM001', "
          "DETAIL = 'row a; row b'; END $$;\n")
    with pytest.raises(MigrationFailed) as e:
        A.apply(db.dsn(), sql_root=root)
    assert "NOTICE: checking rows" in capsys.readouterr().err
    text = e.value.render()
    assert "FM001" in text and "DETAIL: row a; row b" in text and "V9990__preflight" in text
