"""A run of several files that stops half-way says exactly where and why.

Each file commits on its own. When the application writes, during a rollback,
rows an older schema cannot hold (after the probe checked), the rollback stops
at a recorded version, exits 3 and names it; no message says "nothing changed"
when earlier files of the run did commit. Rollback refuses on drift of the files
it would run (exit 3), a pre-flight refusal in the real run exits 3, and an error
while writing the bookkeeping names the bookkeeping table and what committed.
Every scenario runs the real CLI (or the API) against a real server with a real
concurrent writer; nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from yoyo.migrations import get_migration_hash

from harness import apply as A
from harness import verify as V
from harness.errors import LockNotGranted
from tests.builders import add_lab, add_user

REPO = Path(__file__).resolve().parent.parent
V0003 = "V0003__legacy_append_only_hardening"
V0002 = "V0002__roles_and_archive"
V0004 = "V0004__lab_version"
V0006 = "V0006__lab_session_columns_and_verification_attempt"
V0012 = "V0012__lab_session_version_not_null"
V0013 = "V0013__lab_session_one_active"


def cli(*args, sql_root=None, **popen):
    env = dict(os.environ)
    if sql_root:
        env["HARNESS_SQL_ROOT"] = str(sql_root)
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_cli(*args, sql_root=None, timeout=300):
    p = cli(*args, sql_root=sql_root)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def applied_ids(dsn, sql_root):
    return [a["id"] for a in A.status(dsn, sql_root)["applied"]]


def victims_of(sql_root, after: str) -> list[str]:
    """The files ``rollback --to after`` rolls back, newest first."""
    files = A.load_chain(sql_root)
    v = A.find(files, after).version
    return [f.id for f in reversed(files) if f.version > v]


def wait_until(pred, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def assert_never_says_nothing_changed(text: str):
    low = text.lower()
    assert "nothing was changed" not in low and "nothing changed" not in low, text


# ------------------------------------------------------ overtaken between probe and run


def test_rollback_overtaken_by_the_app_stops_at_a_recorded_version_and_exits_3(
        db, sql_root, reference_snapshot):
    """One active session; `rollback --to V0002` probes the whole rollback (it passes),
    the first file commits, then the application moves the session to FAILED (a
    completion the schema before V0006 cannot hold). The rollback stops at V0006,
    exits 3, names V0006 and the session, lists what it rolled back, and never says
    that nothing changed; `apply` then returns to the newest version."""
    owner, app = db.connect("owner"), db.connect("app")
    user, lab = add_user(owner, 1), add_lab(owner, 1)
    sid = uuid.uuid4()
    app.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") '
                "VALUES (%s, %s, %s, 'https://github.com/dev1/lab-1')", (sid, user, lab))
    victims = victims_of(sql_root, V0002)
    first, second = victims[0], victims[1]
    # hold the bookkeeping row of the second file: the first file commits, the second
    # cannot finish until the application has written its row
    gate = db.connect(autocommit=False)
    gate.execute(f"SELECT 1 FROM {A.bk(A.MIGRATION_TABLE)} WHERE migration_id = %s "
                 "FOR UPDATE", (second,))
    proc = cli("rollback", "--target", db.dsn(), "--to", V0002, sql_root=sql_root)
    try:
        wait_until(lambda: first not in applied_ids(db.dsn(), sql_root),
                   what=f"{first} to be rolled back")
        # the application, between two files of the rollback
        app.execute('UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (sid,))
        gate.rollback()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    assert f"rollback stopped at {V0006}" in err, err
    assert "FM002" in err and str(sid) in err
    assert "written while the rollback ran" in err
    assert f"rolled back and committed {victims.index(V0006)} file(s) before {V0006}" in err
    assert first in err and "Traceback" not in err
    assert_never_says_nothing_changed(err)
    st = A.status(db.dsn(), sql_root)
    assert st["current"] == V0006 and st["incomplete"] == []
    assert owner.execute('SELECT status::text FROM "LabSession" WHERE id = %s',
                         (sid,)).fetchone()[0] == "FAILED"
    # back to the newest version, the FAILED session intact and valid
    rc, out, err = run_cli("apply", "--target", db.dsn(), sql_root=sql_root)
    assert rc == 0, err
    assert A.status(db.dsn(), sql_root)["pending"] == []
    rep = V.verify(db.dsn(), sql_root=sql_root, reference_snapshot=reference_snapshot)
    assert rep.ok, V.render_table(rep)


def test_preflight_refusal_in_the_real_run_exits_3_and_names_the_stop(baseline_db, sql_root):
    """V0013's pre-flight refuses (two active sessions for one user and lab) after
    V0003..V0012 were applied by the same run: exit 3, `apply stopped at V0012`, the
    files it applied listed, and the file's "Nothing was changed" narrowed to V0013."""
    owner = baseline_db.connect("owner")
    user, lab = add_user(owner, 1), add_lab(owner, 1)
    dups = [uuid.uuid4(), uuid.uuid4()]
    for n, sid in enumerate(dups):
        owner.execute('INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") '
                      "VALUES (%s, %s, %s, %s)", (sid, user, lab, f"https://github.com/d/f{n}"))
    rc, out, err = run_cli("apply", "--target", baseline_db.dsn(), sql_root=sql_root)
    assert rc == 3, err
    assert f"apply stopped at {V0012}" in err and "FM001" in err
    assert all(str(s) in err for s in dups)
    assert "this run applied and committed" in err and V0003 in err
    assert f"Nothing of {V0013} was changed" in err
    assert_never_says_nothing_changed(err)
    assert applied_ids(baseline_db.dsn(), sql_root)[-1] == V0012


# ------------------------------------------------------------------ drift on rollback


def _drifted_copy(sql_root, tmp_path, *, rollback_file: bool, migration_file: bool):
    root = tmp_path / "sql"
    shutil.copytree(sql_root, root)
    name = "V0019__push_and_queue_api.sql"
    if rollback_file:   # a DROP FUNCTION commented out
        f = root / "rollback" / name
        text = f.read_text()
        assert "DROP FUNCTION" in text
        f.write_text(text.replace("DROP FUNCTION", "-- DROP FUNCTION", 1))
    if migration_file:
        f = root / "migrations" / name
        f.write_text(f.read_text() + "\n-- edited after apply\n")
    return root


@pytest.mark.parametrize("rollback_file,migration_file", [
    (True, False), (False, True), (True, True)],
    ids=["rollback-file-edited", "migration-file-edited", "both-edited"])
def test_rollback_refuses_on_drift_of_the_files_it_would_run(
        db, sql_root, tmp_path, rollback_file, migration_file):
    root = _drifted_copy(sql_root, tmp_path, rollback_file=rollback_file,
                         migration_file=migration_file)
    before = applied_ids(db.dsn(), root)
    # enough steps to reach V0019 whatever the chain holds above it
    steps = str(len([i for i in before if i > "V0018__push_ledger_and_job_queue_guards"]))
    for args in (["--to", "V0018__push_ledger_and_job_queue_guards"], ["--steps", steps],
                 ["--to", "V0018__push_ledger_and_job_queue_guards", "--dry-run"]):
        rc, out, err = run_cli("rollback", "--target", db.dsn(), *args, sql_root=root)
        assert rc == 3, err
        assert "drift" in err and "V0019__push_and_queue_api.sql" in err
        assert ("(rollback file of V0019__push_and_queue_api" in err) == rollback_file
        assert ("(migration file)" in err) == migration_file
        assert "Traceback" not in err
    assert applied_ids(db.dsn(), root) == before
    owner = db.connect()
    assert owner.execute("SELECT to_regproc('claim_verification_job')").fetchone()[0]
    rc, out, err = run_cli("status", "--target", db.dsn(), sql_root=root)
    assert rc == 1
    assert ("ROLLBACK FILES CHANGED (1)" in out) == rollback_file
    assert ("DRIFT (1)" in out) == migration_file


def test_an_edited_rollback_file_of_a_file_that_stays_applied_does_not_block(
        db, sql_root, tmp_path):
    root = _drifted_copy(sql_root, tmp_path, rollback_file=True, migration_file=False)
    rc, out, err = run_cli("rollback", "--target", db.dsn(), "--steps", "1", sql_root=root)
    assert rc == 0, err
    assert "V0019__push_and_queue_api" in applied_ids(db.dsn(), root)


# ------------------------------------------------------------ the bookkeeping step


def test_bookkeeping_error_names_the_table_and_what_this_run_committed(baseline_db, sql_root):
    """A transactional file whose bookkeeping write cannot get its lock (another
    session holds an uncommitted row with the same key): the error names
    harness."_yoyo_migration", not a line of the file, says that nothing of that
    file committed and which files this run did commit."""
    holder = baseline_db.connect(autocommit=False)
    holder.execute(f"INSERT INTO {A.bk(A.MIGRATION_TABLE)} (migration_hash, migration_id, "
                   "applied_at_utc) VALUES (%s, %s, now())",
                   (get_migration_hash(V0004), V0004))
    try:
        with pytest.raises(LockNotGranted) as e:
            A.apply(baseline_db.dsn(), to="V0005", sql_root=sql_root, lock_retries=1,
                    retry_max_delay=0.1)
    finally:
        holder.rollback()
    err = e.value
    text = err.render()
    assert err.exit_code == 3 and err.sqlstate == "55P03"
    assert f'applying {V0004}: writing the bookkeeping (harness."_yoyo_migration") failed' \
        in err.message
    assert f"{V0004}.sql:" not in text
    assert f"nothing of {V0004} was committed" in text
    assert f"this run applied and committed 1 file(s) before {V0004}: {V0003}" in text
    assert f"the database is now at {V0003}" in text
    assert applied_ids(baseline_db.dsn(), sql_root)[-1] == V0003
    assert A.apply(baseline_db.dsn(), to="V0005", sql_root=sql_root).applied == [
        V0004, "V0005__lab_version_guards"]
