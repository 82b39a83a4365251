"""Backup attacks: a database full of the most extreme values the pack accepts
must come back whole from a dump, restored by the migration owner without a
superuser (the README's procedure, run as written), and `harness verify` must pass
on the copy. A value that would not survive is an attack that succeeded: one
append-only row a restore cannot read breaks every later restore.

The pg_dump / pg_restore binaries are the server's own (same major version) where
its build ships them; the npm builds of 16 and 17 carry only the server, so there
the client tools of the newest major (18) are used, as a DBA would: pg_dump and
pg_restore of a newer major dump and restore older servers."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from harness import verify as V
from tests.builders import AUTHOR, add_user, claim, commit, complete, ids, push, seed_world, sha
from tests.attacks.test_hostile_input import _category_samples, _nested
from tests.helpers import digests

REPO = Path(__file__).resolve().parents[2]
CATS = "".join(_category_samples())                 # one character per Unicode category
PRINTABLE_CATS = "".join(c for c in CATS if ord(c) > 0x9f)   # no control characters
JSON_EXTREMES = {
    "every category": CATS, "keys": {c: c for c in PRINTABLE_CATS[:40]},
    "big": 1e308, "tiny": -1e-308, "huge_int": 2**200, "neg": -(2**63),
    "exact": "123456789012345678901234567890.123456789012345678901234567890",
    "decimal": 0.1, "empty": {}, "list": [None, True, False, [], {}],
}


def _all_tables(conn) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1")]


def _extreme_world(db) -> dict:
    """seed_world, then the extremes every API function and every direct write of
    forgea_app accepts."""
    world = seed_world(db)
    owner, app = db.connect("owner"), db.connect("app")
    add_user(owner, 4)
    base = "https://github.com/" + "o" * 39 + "/" + "r" * 96 + ".git"
    url = base + "/" * (500 - len(base))
    key = ("k" + PRINTABLE_CATS * 4)[:200]
    s4 = app.execute("SELECT create_lab_session(%s, %s, %s, %s, %s)",
                     (ids.user(4), ids.lab(2), url, 2**53 - 1, key)).fetchone()[0]
    branch = "\u00fc" * 127 + "x"                                # 255 bytes
    delivery = ("a" + "Z9._:-" * 20)[:100]
    c1 = commit(sha(1, 64), author={**AUTHOR, "name": (CATS * 40)[:1000]},
                added=[f"f{i}" for i in range(3000)])
    c1["author"].update(email=(PRINTABLE_CATS * 40)[:1000], username=("u" * 1000))
    c1["modified"] = [(PRINTABLE_CATS * 200)[:4096]]
    c1["removed"] = [CATS, "\u212a", "a\u0301"]
    c1["timestamp"] = "2005-04-07T00:00:00.123456789+23:59"
    c2 = commit(sha(2, 64), author={**AUTHOR, "name": " x "})
    c2["author"].update(email=None, username=None)
    c2["timestamp"] = "9999-12-31T23:59:60Z"
    rows = app.execute(
        "SELECT * FROM record_push(%s, %s, %s, %s, %s, %s, %s)",
        (delivery, 2**53 - 1, url, "refs/heads/" + branch, sha(2, 64),
         "2005-04-07 00:00:00+00", Jsonb([c1, c2]))).fetchall()
    assert [r[4] for r in rows] == ["recorded", "recorded"], rows
    upper = datetime.now(timezone.utc) + timedelta(days=1) - timedelta(minutes=5)
    rows = app.execute("SELECT * FROM record_push(%s, %s, %s, %s, %s, %s, %s)",
                       ("upper-bound", 2**53 - 1, url, "refs/heads/main", sha(3, 64), upper,
                        Jsonb([commit(sha(3, 64))]))).fetchall()
    assert [r[4] for r in rows] == ["recorded"], rows
    push(app, [commit(sha(9601))], n=2, delivery="d-extreme-2")
    for ts in ("9999-12-31 23:59:59.999", "1970-01-01 00:00:00"):
        app.execute('INSERT INTO "AuditLog" (id, "userId", action, metadata, "actorId", '
                    '"createdAt") VALUES (gen_random_uuid(), %s, %s, %s, %s, %s)',
                    (ids.user(4), CATS, Jsonb(JSON_EXTREMES), PRINTABLE_CATS, ts))
    app.execute('UPDATE "LabSession" SET "lastActivityAt" = %s WHERE id = %s',
                ("9999-12-31 23:59:59.999", world["s2"]))
    worker = db.connect("worker")
    worker_id = ("w" + PRINTABLE_CATS * 10)[:200]
    passed = False
    for n, code in enumerate((255, -255, None, 0, 1, 2)):
        job = claim(worker, worker_id)
        if job is None:
            break
        status = "PASSED" if job["sessionId"] == s4 and not passed else "FAILED"
        passed = passed or status == "PASSED"
        logs = {"extremes": JSON_EXTREMES, "deep": _nested(63), "n": n}   # 64 levels
        complete(worker, job["id"], status, worker_id=worker_id, exit_code=code, logs=logs)
    assert passed
    app.execute('INSERT INTO "User" (id, email, "createdAt", "updatedAt") VALUES '
                "(%s, %s, '1970-01-01', '9999-12-31 23:59:59.999')",
                (ids.user(5), CATS + "@example.com"))
    world["s4"] = s4
    return world


def _bin(db, name: str) -> str:
    own = db.cluster.bin_dir / name
    if own.exists():
        return str(own)
    from harness import servers
    return str(servers.find_bin_dir(18) / name)


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)


def _pg_restore(db, args: list[str]) -> subprocess.CompletedProcess:
    """``pg_restore ARGS``. With newer client tools than the server (16's npm build
    ships none, and 18's pg_restore sets transaction_timeout, which 16 does not
    know), the archive is turned into SQL by pg_restore, that one SET is left
    out, and psql runs the script with the same options; nothing else changes."""
    tool = _bin(db, "pg_restore")
    if tool == str(db.cluster.bin_dir / "pg_restore") or \
            db.cluster.server_version_num >= 170000:
        return _run([tool, *args])
    dsn = next(a.split("=", 1)[1] for a in args if a.startswith("--dbname="))
    script = _run([tool, "--file=-", *[a for a in args if not a.startswith("--dbname=")
                                       and a not in ("--exit-on-error", "--single-transaction")]])
    assert script.returncode == 0, script.stderr
    # split on newlines only: COPY data holds \r, \x0b, \x1c, \u2028 ... as values
    text = "\n".join(line for line in script.stdout.split("\n")
                     if line != "SET transaction_timeout = 0;")
    psql = [_bin(db, "psql"), "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={dsn}"]
    if "--single-transaction" in args:
        psql.append("--single-transaction")
    return subprocess.run(psql, input=text, capture_output=True, text=True, timeout=600)


def _owner_restores(db, scratch: Path, target: str) -> tuple[str, subprocess.CompletedProcess]:
    """The README's procedure for the migration owner (no superuser): a full
    custom-format dump, a new database the owner creates, a full restore in one
    transaction. Returns the restored database's DSN and pg_restore's result."""
    dump = scratch / "forgea.dump"
    p = _run([_bin(db, "pg_dump"), "--format=custom", f"--file={dump}", db.dsn("owner")])
    assert p.returncode == 0, p.stderr
    with psycopg.connect(db.dsn("owner"), autocommit=True) as conn:   # CREATEDB, not superuser
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    dsn = db.cluster.dsn(user="forgea_owner", dbname=target)
    p = _pg_restore(db, ["--exit-on-error", "--single-transaction", f"--dbname={dsn}",
                         str(dump)])
    return dsn, p


def _drop(db, name: str) -> None:
    with db.cluster.connect() as su:
        su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def test_a_dump_of_the_most_extreme_accepted_values_restores_whole(db, scratch_dir):
    world = _extreme_world(db)
    owner = db.connect("owner")
    rep = V.verify(db.dsn("owner"))
    assert rep.ok, V.render_table(rep)
    tables = _all_tables(owner)
    before = digests(owner, tables)
    target = f"{db.name}_restored"
    try:
        dsn, p = _owner_restores(db, scratch_dir, target)
        assert p.returncode == 0, p.stderr
        with psycopg.connect(dsn, autocommit=True) as restored:
            assert digests(restored, tables) == before
            assert restored.execute('SELECT count(*) FROM "LabAttempt" WHERE "sessionId" = %s',
                                    (world["s4"],)).fetchone()[0] == 3
            assert restored.execute("SELECT count(*) FROM verify_lab_attempt_chain(NULL)"
                                    ).fetchone()[0] == 0
        rep = V.verify(dsn)
        assert rep.ok, V.render_table(rep)
    finally:
        _drop(db, target)


def _ledger_world(db) -> None:
    seed_world(db)
    app = db.connect("app")
    n = 9700
    for s in (1, 2):
        for d in range(5):
            push(app, [commit(sha(n)), commit(sha(n + 1))], n=s, delivery=f"ledger-{s}-{d}")
            n += 2
    worker = db.connect("worker")
    while (job := claim(worker, "ledger-worker")) is not None:
        complete(worker, job["id"], "FAILED", worker_id="ledger-worker", logs={})


def test_the_owner_restores_the_ledger_without_a_superuser(db, scratch_dir):
    """The README's restore procedure, run as written by the migration owner (no
    superuser): the ledger comes back with the same rows, hash chains and anchors,
    every guard trigger ALWAYS, every grant, and `harness verify` passes. The
    earlier procedure (a data-only restore with --disable-triggers) is refused to
    the owner, which is why it is now the superuser's road only."""
    _ledger_world(db)
    owner = db.connect("owner")
    tables = _all_tables(owner)
    before = digests(owner, tables)
    target = f"{db.name}_ledger"
    schema_only = f"{db.name}_schema"
    try:
        dsn, p = _owner_restores(db, scratch_dir, target)
        assert p.returncode == 0, p.stderr
        with psycopg.connect(dsn, autocommit=True) as restored:
            assert digests(restored, tables) == before
        cli = _run([sys.executable, "-m", "harness.cli", "verify", "--target", dsn],
                   cwd=REPO, env=dict(os.environ))
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "verify: OK" in cli.stdout
        # the old road: schema first, then data only with triggers disabled
        with psycopg.connect(db.dsn("owner"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(schema_only)))
        sdsn = db.cluster.dsn(user="forgea_owner", dbname=schema_only)
        dump = scratch_dir / "forgea.dump"
        p = _pg_restore(db, ["--schema-only", "--exit-on-error", f"--dbname={sdsn}",
                             str(dump)])
        assert p.returncode == 0, p.stderr
        p = _pg_restore(db, ["--data-only", "--disable-triggers", "--exit-on-error",
                             "--single-transaction", f"--dbname={sdsn}", str(dump)])
        assert p.returncode != 0 and ("system trigger" in p.stderr
                                      or "permission denied" in p.stderr), p.stderr
    finally:
        _drop(db, target)
        _drop(db, schema_only)

