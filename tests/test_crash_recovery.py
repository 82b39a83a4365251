"""Crashes where they hurt most, then `status`, `apply` and `verify` on the result.

The long backfills (V0008 labVersionId/completedAt, V0009 VerificationLog copy,
V0016 repository mappings) run on a production-like database (tests/prodlike.py
plus 6000 legacy sessions with their logs, so that each backfill has several
batches). Each file is interrupted at two points, for real:

* mid-backfill: a session row of the second batch is held FOR UPDATE by another
  session, so the first batch has committed and the second waits;
* after its last statement: the bookkeeping table is held in SHARE mode, so the
  completion record waits;

and at each point either the harness process gets SIGKILL (its backend runs on
until it notices the client is gone) or its backend is terminated. Then `status`
must show the file as incomplete, a new `apply` must finish it, and `verify`
(with the definitions check) must pass. A multi-file rollback is interrupted the
same way in a transactional file and in a no-transaction one; and two `harness
apply` processes race on one database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness import apply as A
from harness import verify as V
from tests.conftest import _build_template, _fresh_db
from tests.helpers import legacy_checkpoint
from tests.prodlike import seed_production_like

#: long tests, started first; one worker runs them all, so each crash template
#: (prodlike + bulk at the version before a backfill) is built once per run, not per worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("crash_recovery")]

REPO = Path(__file__).resolve().parent.parent
BULK = 6000
#: where each backfill is blocked mid-way: the first session of its second batch
FILES = {
    "V0008__lab_session_backfill": "V0007__lab_session_and_attempt_guards",
    "V0009__verification_attempt_copy": "V0008__lab_session_backfill",
    "V0016__github_repo_mapping_backfill": "V0015__github_repo_mapping_guards",
}


def add_bulk_legacy_sessions(conn, seed, n=BULK):
    """``n`` legacy sessions (VERIFIED_PASS, as the old lifecycle allowed) with one
    VerificationLog row each, about 1.6 KB of diff per row (4 rows per heap page),
    ids sorting before every other session."""
    users, labs = seed["users"], seed["labs"]
    with conn.transaction():
        conn.execute(
            'INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl", "startedAt",'
            ' "lastActivityAt") '
            "SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, "
            "(%s::uuid[])[1 + g %% %s], (%s::uuid[])[1 + g %% %s], "
            "'https://github.com/bulk' || g || '/forgea-lab', "
            "timestamp '2026-01-20' + g * interval '1 second', "
            "timestamp '2026-01-21' + g * interval '1 second' "
            "FROM generate_series(1, %s) AS g",
            (users, len(users), labs, len(labs), n))
        conn.execute('UPDATE "LabSession" SET "status" = \'VERIFIED_PASS\' '
                     "WHERE \"id\" < '00000000-0000-4000-a000-000000000000'")
        conn.execute(
            'INSERT INTO "VerificationLog" ("id", "sessionId", "commitSha", "prDiff",'
            ' "ciOutput", "verifiedAt") '
            "SELECT ('00000000-0000-4000-a000-' || lpad(to_hex(g), 12, '0'))::uuid, "
            "('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, "
            "left(md5(g::text) || md5(g::text || 'x'), 40), repeat(md5(g::text), 50), "
            "'ok ' || g, timestamp '2026-01-22' + g * interval '1 second' "
            "FROM generate_series(1, %s) AS g", (n,))


def _prepare(conn):
    add_bulk_legacy_sessions(conn, seed_production_like(conn))


@pytest.fixture(scope="module")
def crash_templates(pg_cluster, tmpl_baseline, sql_root):
    """Production-like templates (prodlike + bulk) at the version before each
    backfill, built on first use."""
    built: dict[str, str] = {}

    def get(version: str) -> str:
        if version not in built:
            name = f"tmpl_crash_{version[:5].lower()}_{os.getpid()}"
            built[version] = _build_template(pg_cluster, name, version, sql_root,
                                             source=tmpl_baseline, prepare=_prepare)
        return built[version].dbname

    yield get
    for janitor in built.values():
        janitor.drop()


# ---------------------------------------------------------------- helpers


class Harness:
    """A `harness` CLI process; its output goes to files (a full pipe would stall it)."""

    def __init__(self, *args, sql_root):
        env = dict(os.environ, HARNESS_SQL_ROOT=str(sql_root))
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=REPO,
                                     env=env, stdout=self.out, stderr=self.err, text=True)

    def wait(self, timeout=600) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout)
        texts = []
        for f in (self.out, self.err):
            f.seek(0)
            texts.append(f.read())
            f.close()
        return rc, texts[0], texts[1]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


def cli(*args, sql_root) -> Harness:
    return Harness(*args, sql_root=sql_root)


def run_cli(*args, sql_root, timeout=600):
    return cli(*args, sql_root=sql_root).wait(timeout)


def harness_waiting(su, dbname, query_like: str, timeout=120) -> int:
    """The pid of the harness backend once it waits on a lock in a statement like
    ``query_like``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = su.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                         "application_name = 'harness' AND wait_event_type = 'Lock' "
                         "AND query ILIKE %s", (dbname, query_like)).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"the harness never waited in {query_like!r}")


def wait_gone(su, pid, timeout=120):
    deadline = time.monotonic() + timeout
    while su.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, f"backend {pid} never ended"
        time.sleep(0.05)


def crash(how: str, h: Harness, su, backend: int, release, *, now_at: str, fid: str,
          operation: str) -> str:
    """SIGKILL the harness (its backend runs on until the blocker lets it go and it
    finds the client gone) or terminate its backend; return the harness's stderr.
    A terminated backend: the harness exits 1 and says where the database is now
    (``now_at``) and that ``fid`` is incomplete, if it is."""
    try:
        if how == "sigkill":
            h.proc.send_signal(signal.SIGKILL)
            rc, out, err = h.wait(30)
            assert rc == -signal.SIGKILL
            release()
        else:
            su.execute("SELECT pg_terminate_backend(%s)", (backend,))
            rc, out, err = h.wait(60)
            release()
            assert rc == 1, err
            assert "connection lost" in err and "`harness status` shows" in err, err
            assert f"the database is now at {now_at} (its last applied version)" in err, err
            if operation:
                assert f"{fid} is incomplete (interrupted {operation})" in err, err
            assert "Traceback" not in err
    finally:
        h.kill()
    wait_gone(su, backend)
    return err


def hold_row(db, session_id):
    conn = db.connect(autocommit=False)
    conn.execute('SELECT 1 FROM "LabSession" WHERE "id" = %s FOR UPDATE', (session_id,))
    return conn


def hold_bookkeeping(db):
    conn = db.connect(autocommit=False)
    conn.execute(f"LOCK TABLE {A.bk(A.MIGRATION_TABLE)} IN SHARE MODE")
    return conn


def status_cli(db, sql_root):
    rc, out, err = run_cli("status", "--target", db.dsn(), "--json", sql_root=sql_root)
    return rc, json.loads(out)


def second_batch_row(owner, fid):
    if fid.startswith("V0008"):     # batches of 5000 sessions in id order
        return owner.execute('SELECT "id" FROM "LabSession" ORDER BY "id" OFFSET 5000 '
                             "LIMIT 1").fetchone()[0]
    if fid.startswith("V0016"):     # batches of 500 sessions in id order
        return owner.execute('SELECT "id" FROM "LabSession" ORDER BY "id" OFFSET 500 '
                             "LIMIT 1").fetchone()[0]
    # V0009: batches of 1000 heap pages; the foreign key check of an attempt takes
    # FOR KEY SHARE on its session, which the held FOR UPDATE blocks
    pages = owner.execute("SELECT pg_relation_size('\"VerificationLog\"') / "
                          "current_setting('block_size')::int").fetchone()[0]
    assert pages > 1000, pages
    return owner.execute("SELECT \"sessionId\" FROM \"VerificationLog\" WHERE ctid >= "
                         "'(1000,0)'::tid ORDER BY ctid LIMIT 1").fetchone()[0]


def first_batches_committed(owner, fid) -> int:
    q = {"V0008": 'SELECT count(*) FROM "LabSession" WHERE "labVersionId" IS NOT NULL',
         "V0009": 'SELECT count(*) FROM "VerificationAttempt"',
         "V0016": 'SELECT count(*) FROM "GitHubRepoMapping"'}[fid[:5]]
    return owner.execute(q).fetchone()[0]


def assert_backfill_complete(owner, fid):
    if fid.startswith("V0008"):
        assert owner.execute('SELECT count(*) FROM "LabSession" WHERE "labVersionId" IS NULL'
                             ).fetchone()[0] == 0
    elif fid.startswith("V0009"):
        assert owner.execute(
            'SELECT count(*) FROM "VerificationLog" AS vl WHERE NOT EXISTS (SELECT 1 FROM '
            '"VerificationAttempt" AS a WHERE a."id" = vl."id")').fetchone()[0] == 0
    else:
        assert owner.execute(
            'SELECT count(*) FROM "GitHubRepoMapping" WHERE "sessionId" < '
            "'00000000-0000-4000-a000-000000000000'").fetchone()[0] == BULK


def assert_incomplete(db, sql_root, fid, operation):
    rc, st = status_cli(db, sql_root)
    assert rc == 1
    assert [(i["id"], i["operation"]) for i in st["incomplete"]] == [(fid, operation)]
    assert fid not in [a["id"] for a in st["applied"]]
    return st


# ---------------------------------------------------------------- the backfills


@pytest.mark.parametrize("how", ["sigkill", "terminate"])
@pytest.mark.parametrize("fid", list(FILES))
def test_backfill_interrupted_twice_then_status_apply_and_verify(
        pg_cluster, crash_templates, sql_root, reference_snapshot, fid, how):
    with _fresh_db(pg_cluster, crash_templates(FILES[fid]), "t_crash") as db:
        owner, su = db.connect(), db.connect("superuser")
        assert A.status(db.dsn(), sql_root)["current"] == FILES[fid]
        args = ("apply", "--target", db.dsn(), "--to", fid, "--lock-timeout", "120s")

        # 1. mid-backfill: the first batch committed, the second waits on a row
        blocker = hold_row(db, second_batch_row(owner, fid))
        proc = cli(*args, sql_root=sql_root)
        backend = harness_waiting(su, db.name, "%CALL%")
        assert first_batches_committed(owner, fid) > 0
        crash(how, proc, su, backend, blocker.rollback, now_at=FILES[fid], fid=fid,
              operation="apply")
        assert_incomplete(db, sql_root, fid, "apply")

        # 2. the rerun did every statement; its completion record waits
        blocker = hold_bookkeeping(db)
        proc = cli(*args, sql_root=sql_root)
        backend = harness_waiting(su, db.name, "%_yoyo_migration%")
        assert_backfill_complete(owner, fid)
        crash(how, proc, su, backend, blocker.rollback, now_at=FILES[fid], fid=fid,
              operation="apply")
        assert_incomplete(db, sql_root, fid, "apply")

        # 3. apply finishes it (and the rest of the chain); verify passes
        rc, out, err = run_cli("apply", "--target", db.dsn(), sql_root=sql_root)
        assert rc == 0, err
        assert f"{fid}: its apply was interrupted; running the file again" in err
        rc, st = status_cli(db, sql_root)
        assert rc == 0 and st["pending"] == [] and st["incomplete"] == []
        assert_backfill_complete(owner, fid)
        rep = V.verify(db.dsn(), sql_root=sql_root, reference_snapshot=reference_snapshot,
                   checkpoint=legacy_checkpoint(db.dsn()))
        assert rep.ok, V.render_table(rep)


# ---------------------------------------------------------------- a rollback


def hold_record(db, mid):
    conn = db.connect(autocommit=False)
    conn.execute(f"SELECT 1 FROM {A.bk(A.MIGRATION_TABLE)} WHERE migration_id = %s "
                 "FOR UPDATE", (mid,))
    return conn


@pytest.mark.parametrize("how", ["sigkill", "terminate"])
def test_rollback_interrupted_in_a_transactional_and_a_no_transaction_file(
        db, sql_root, reference_snapshot, how):
    su, owner = db.connect("superuser"), db.connect()
    args = ("rollback", "--target", db.dsn(), "--to", "V0012__lab_session_version_not_null",
            "--lock-timeout", "120s")
    # 1. inside V0019's rollback transaction (V0021, V0020, V0018 committed before it)
    blocker = hold_record(db, "V0019__push_and_queue_api")
    proc = cli(*args, sql_root=sql_root)
    backend = harness_waiting(su, db.name, "%_yoyo_migration%")
    crash(how, proc, su, backend, blocker.rollback, now_at="V0019__push_and_queue_api",
          fid="V0019__push_and_queue_api", operation="")
    rc, st = status_cli(db, sql_root)
    assert rc == 0 and st["incomplete"] == []
    assert st["current"] == "V0019__push_and_queue_api"
    assert owner.execute("SELECT to_regproc('claim_verification_job')").fetchone()[0]

    # 2. V0013's DROP INDEX CONCURRENTLY committed, its record not yet removed
    blocker = hold_record(db, "V0013__lab_session_one_active")
    proc = cli(*args, sql_root=sql_root)
    backend = harness_waiting(su, db.name, "%_yoyo_migration%")
    crash(how, proc, su, backend, blocker.rollback,
          now_at="V0012__lab_session_version_not_null",
          fid="V0013__lab_session_one_active", operation="rollback")
    st = assert_incomplete(db, sql_root, "V0013__lab_session_one_active", "rollback")
    assert st["current"] == "V0012__lab_session_version_not_null"
    assert owner.execute("SELECT to_regclass('\"LabSession_userId_labId_active_key\"')"
                         ).fetchone()[0] is None

    # 3. apply finishes the rollback of V0013, then applies everything again
    rc, out, err = run_cli("apply", "--target", db.dsn(), sql_root=sql_root)
    assert rc == 0, err
    rc, st = status_cli(db, sql_root)
    assert rc == 0 and st["pending"] == [] and st["incomplete"] == []
    rep = V.verify(db.dsn(), sql_root=sql_root, reference_snapshot=reference_snapshot,
                   checkpoint=legacy_checkpoint(db.dsn()))
    assert rep.ok, V.render_table(rep)


# ---------------------------------------------------------------- two applies at once


def test_two_harness_apply_processes_at_once_apply_each_file_once(
        baseline_db, sql_root, reference_snapshot):
    seed_production_like(baseline_db.connect())
    pending = len(A.status(baseline_db.dsn(), sql_root)["pending"])
    procs = [cli("apply", "--target", baseline_db.dsn(), "--lock-wait", "600",
                 sql_root=sql_root) for _ in range(2)]
    outs = [p.wait(900) for p in procs]
    assert [o[0] for o in outs] == [0, 0], [o[2] for o in outs]
    counts = sorted(int(re.search(r"(\d+) migration\(s\) applied", o[1]).group(1))
                    for o in outs)
    assert counts == [0, pending]
    assert any("waiting up to 600s for the migration lock held by pid" in o[2] for o in outs)
    conn = baseline_db.connect()
    assert conn.execute(f"SELECT migration_id, count(*) FROM {A.bk('_yoyo_log')} "
                        "WHERE operation = 'apply' GROUP BY 1 HAVING count(*) > 1"
                        ).fetchall() == []
    assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND objid = %s", (A.LOCK_KEY,)).fetchone()[0] == 0
    st = A.status(baseline_db.dsn(), sql_root)
    assert st["pending"] == [] and st["incomplete"] == [] and st["drift"] == []
    rep = V.verify(baseline_db.dsn(), sql_root=sql_root, reference_snapshot=reference_snapshot,
                   checkpoint=legacy_checkpoint(baseline_db.dsn()))
    assert rep.ok, V.render_table(rep)
