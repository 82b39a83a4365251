"""Faults: backends terminated mid-write, a server crash mid-apply, a statement
timeout mid-backfill. Nothing half-written, the chain recovers, verify passes,
no committed data is lost."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest

from harness import apply as A
from harness import servers
from harness import verify as V
from tests.builders import claim, commit, fork_url, seed_world, sha
from tests.attacks.conftest import WATCHED
from tests.helpers import digests

SLOW = ("-- V9990__slow_for_fault_tests: sleeps while the marker table exists\n"
        'CREATE TABLE "SlowPlanted" (id int);\n'
        "SELECT pg_sleep(60) FROM pg_class WHERE relname = 'slow_marker';\n")


def assert_verify(dsn, sql_root=None):
    rep = V.verify(dsn, sql_root=sql_root)
    assert rep.ok, V.render_table(rep)


def wait_for(conn, pred_sql, params=(), timeout=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = conn.execute(pred_sql, params).fetchone()
        if r and r[0]:
            return r[0]
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {pred_sql}")


def _terminate_when_blocked(db, lock_table: str, target):
    """Hold SHARE on ``lock_table`` so ``target()`` blocks at its write there; terminate
    that backend; return the exception target() got."""
    blocker = db.connect("owner", autocommit=False)
    blocker.execute(f'LOCK TABLE "{lock_table}" IN SHARE MODE')
    su = db.connect("superuser")
    result = {}

    def run():
        try:
            result["ok"] = target()
        except psycopg.Error as e:
            result["err"] = e

    t = threading.Thread(target=run)
    t.start()
    pid = wait_for(su, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    su.execute("SELECT pg_terminate_backend(%s)", (pid,))
    t.join(20)
    blocker.rollback()
    return result


def test_backend_killed_during_record_push(db):
    seed_world(db)
    owner = db.connect("owner")
    before = digests(owner, WATCHED)

    def go():
        with psycopg.connect(db.dsn("app"), autocommit=True) as app:
            return app.execute("SELECT * FROM record_push('kill-1', 1001, %s, "
                               "'refs/heads/main', %s, now(), %s::jsonb)",
                               (fork_url(1), sha(8002), json.dumps([commit(sha(8001)),
                                                                commit(sha(8002))]))
                               ).fetchall()

    res = _terminate_when_blocked(db, "AuditLog", go)
    assert "err" in res and res["err"].sqlstate in (None, "57P01"), res
    assert digests(owner, WATCHED) == before
    assert owner.execute('SELECT count(*) FROM "LabAttempt" WHERE "deliveryId" = '
                         "'kill-1'").fetchone()[0] == 0
    assert_verify(db.dsn("owner"))


def test_backend_killed_during_complete(db):
    seed_world(db)
    worker = db.connect("worker")
    claimed = claim(worker, "wk")
    job, token = claimed["id"], claimed["leaseToken"]
    owner = db.connect("owner")
    before = digests(owner, WATCHED)

    def go():
        with psycopg.connect(db.dsn("worker"), autocommit=True) as w:
            return w.execute("SELECT * FROM complete_verification_job(%s, 'wk', 'PASSED', 0, "
                             "'{}', %s)", (job, token)).fetchall()

    res = _terminate_when_blocked(db, "VerificationAttempt", go)
    assert "err" in res, res
    assert digests(owner, WATCHED) == before
    assert owner.execute('SELECT status::text FROM "VerificationJob" WHERE id = %s',
                         (job,)).fetchone()[0] == "RUNNING"
    assert_verify(db.dsn("owner"))


def _slow_tree(sql_root, tmp_path):
    root = tmp_path / "sql"
    shutil.copytree(sql_root, root)
    (root / "migrations" / "V9990__slow_for_fault_tests.sql").write_text(SLOW)
    (root / "rollback" / "V9990__slow_for_fault_tests.sql").write_text(
        '-- rollback\nDROP TABLE "SlowPlanted";\n')
    return root


def _apply_subprocess(dsn, root):
    code = ("import sys; from harness.apply import apply; "
            f"apply({dsn!r}, sql_root={str(root)!r})")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(sql_root_parent()))


def sql_root_parent():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


def test_backend_killed_during_migration(db, sql_root, tmp_path):
    root = _slow_tree(sql_root, tmp_path)
    owner = db.connect("owner")
    owner.execute("CREATE TABLE slow_marker ()")
    proc = _apply_subprocess(db.dsn("owner"), root)
    su = db.connect("superuser")
    try:
        pid = wait_for(su, "SELECT pid FROM pg_stat_activity WHERE datname = "
                           "current_database() AND query LIKE '%%pg_sleep(60)%%' "
                           "AND pid <> pg_backend_pid()")
        su.execute("SELECT pg_terminate_backend(%s)", (pid,))
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert owner.execute("""SELECT to_regclass('"SlowPlanted"')""").fetchone()[0] is None
    st = A.status(db.dsn("owner"), root)
    assert [p["id"] for p in st["pending"]] == ["V9990__slow_for_fault_tests"]
    owner.execute("DROP TABLE slow_marker")
    A.apply(db.dsn("owner"), sql_root=root)
    assert_verify(db.dsn("owner"), sql_root=root)


def test_statement_timeout_mid_backfill_then_resume(baseline_db, sql_root):
    owner = baseline_db.connect("owner")
    owner.execute("""
        INSERT INTO "User" (id, email)
        SELECT md5('u' || i)::uuid, 'u' || i || '@example.com' FROM generate_series(1, 20000) i;
        INSERT INTO "Lab" (id, title, epic, "failureClass", "sourceGithubIssueUrl",
                           "repoVersion", "baseRepoUrl", constraints)
        VALUES ('00000000-0000-4000-8000-00000000abcd', 't', 'e', 'RESOURCE_LEAK',
                'https://github.com/f/l/issues/1', 'v1', 'https://github.com/f/l', '{}');
        INSERT INTO "LabSession" (id, "userId", "labId", "userForkUrl")
        SELECT md5('s' || i)::uuid, md5('u' || i)::uuid,
               '00000000-0000-4000-8000-00000000abcd', 'https://github.com/u' || i || '/lab'
        FROM generate_series(1, 20000) i;""")
    before = owner.execute('SELECT count(*) FROM "LabSession"').fetchone()[0]
    A.apply(baseline_db.dsn(), to="V0007", sql_root=sql_root)
    # the backfill file as psql would run it, with a statement_timeout that fires mid-CALL
    # (harness apply --statement-timeout 1ms already dies in its own bookkeeping reads)
    from harness.chain import load_chain
    f = next(x for x in load_chain(sql_root) if x.id.startswith("V0008"))
    stmts = A.split_statements(f.sql)
    runner = baseline_db.connect("owner")
    runner.execute(stmts[0])                       # CREATE PROCEDURE
    runner.execute("SET statement_timeout = '5ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        runner.execute(stmts[1])                   # CALL ... (cancelled)
    runner.execute("RESET statement_timeout")
    partial = owner.execute('SELECT count(*) FROM "LabSession" WHERE "labVersionId" IS NOT NULL'
                            ).fetchone()[0]
    assert partial < before
    A.apply(baseline_db.dsn(), sql_root=sql_root)
    assert owner.execute('SELECT count(*) FROM "LabSession"').fetchone()[0] == before
    assert_verify(baseline_db.dsn())


def test_server_crash_mid_apply(pg_version, sql_root, tmp_path):
    cluster = servers.start_throwaway(pg_version)
    try:
        with cluster.connect() as su:
            su.execute("CREATE ROLE forgea_owner LOGIN CREATEROLE CREATEDB")
            su.execute("CREATE DATABASE crash OWNER forgea_owner")
        dsn = cluster.dsn(user="forgea_owner", dbname="crash")
        root = _slow_tree(sql_root, tmp_path)
        A.apply(dsn, to="V0002", sql_root=root)
        with psycopg.connect(dsn, autocommit=True) as c:
            uid = uuid.uuid4()
            c.execute('INSERT INTO "User" (id, email) VALUES (%s, %s)', (uid, "keep@example.com"))
            c.execute("CREATE TABLE slow_marker ()")
        proc = _apply_subprocess(dsn, root)
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                wait_for(c, "SELECT pid FROM pg_stat_activity WHERE query LIKE "
                            "'%%pg_sleep(60)%%' AND pid <> pg_backend_pid()", timeout=120)
            cluster.pg_ctl("restart", "-m", "immediate", "-w", "-t", "60")
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0
        with psycopg.connect(dsn, autocommit=True) as c:
            assert c.execute('SELECT email FROM "User" WHERE id = %s', (uid,)).fetchone() == \
                ("keep@example.com",)
            c.execute("DROP TABLE slow_marker")
        A.apply(dsn, sql_root=root)
        assert_verify(dsn, sql_root=root)
    finally:
        cluster.destroy()
