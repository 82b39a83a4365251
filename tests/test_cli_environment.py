"""The CLI picks its database as libpq tools do, and its exit codes are conventional.

Without ``--target``: ``DATABASE_URL``, else the libpq variables (``PGHOST``,
``PGPORT``, ``PGDATABASE``, ``PGUSER``, ...), else the embedded server; every
command that connects names its target on its first stderr line. A malformed
DSN is a usage error (2) before any connection; refused credentials exit 6, a
server that is not there exits 4, within the connect timeout. ``--version``
names the pack and the chain's head; each command's ``--help`` lists only the
exit codes it can return. Every case runs the real CLI against a real server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import apply as A
from harness.dsn import DEFAULT_CONNECT_TIMEOUT, with_connect_timeout
from harness.errors import (COMMAND_EXIT_CODES, EXIT_AUTH, EXIT_OK, EXIT_SERVER,
                            EXIT_USAGE)
from tests.conftest import OWNER

REPO = Path(__file__).resolve().parent.parent


def clean_env(**extra) -> dict:
    """The test's environment without any libpq variable or DATABASE_URL, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k != "DATABASE_URL"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def harness(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO,
                          env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def first_line(p) -> str:
    return p.stderr.splitlines()[0] if p.stderr else ""


def pg_env(db, **extra) -> dict:
    return clean_env(**{"PGHOST": "127.0.0.1", "PGPORT": db.cluster.port,
                        "PGDATABASE": db.name, "PGUSER": OWNER, **extra})


# ------------------------------------------------------------------ choosing the target


def test_libpq_variables_choose_the_database_and_status_prints_it_first(db, sql_root):
    env = pg_env(db, HARNESS_SQL_ROOT=sql_root)
    p = harness("status", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert first_line(p) == (f"harness: target postgresql://{OWNER}@127.0.0.1:"
                             f"{db.cluster.port}/{db.name} "
                             "(from PGHOST/PGPORT/PGDATABASE/PGUSER)")
    st = json.loads(p.stdout)
    # the database the variables name, not the embedded server: its name, its chain
    assert f"/{db.name}" in st["target"] and str(db.cluster.port) in st["target"]
    assert st["pending"] == [] and len(st["applied"]) == len(A.load_chain(sql_root))
    p = harness("status", env=env)
    assert p.returncode == 0 and db.name in p.stdout


def test_database_url_wins_over_the_libpq_variables(db, baseline_db, sql_root):
    # PG* name one database, DATABASE_URL another: DATABASE_URL's is used
    env = pg_env(db, DATABASE_URL=baseline_db.dsn(), HARNESS_SQL_ROOT=sql_root)
    p = harness("status", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert first_line(p) == (f"harness: target postgresql://{OWNER}@127.0.0.1:"
                             f"{db.cluster.port}/{baseline_db.name} (from DATABASE_URL)")
    st = json.loads(p.stdout)
    assert baseline_db.name in st["target"] and st["pending"]   # the baseline database
    # and --target wins over both
    p = harness("status", "--target", db.dsn(), "--json", env=env)
    assert p.returncode == 0 and "(from --target)" in first_line(p)
    assert json.loads(p.stdout)["pending"] == []


def test_printed_target_never_shows_the_password(db):
    url = f"postgresql://{OWNER}:s3cret-pw@127.0.0.1:{db.cluster.port}/{db.name}"
    p = harness("status", env=clean_env(DATABASE_URL=url))
    assert p.returncode == 0, p.stderr      # trust auth: the password is not checked
    assert "s3cret-pw" not in p.stderr + p.stdout
    assert first_line(p).startswith(f"harness: target postgresql://{OWNER}@127.0.0.1:")


# ------------------------------------------------------------------ usage errors


@pytest.mark.parametrize("dsn", ["host=127.0.0.1 bogus_option=1", "host 127.0.0.1",
                                 "postgresql://u@h/db?not_an_option=1",
                                 "postgresql://u@h/db?schema=public"])
def test_malformed_dsn_is_a_usage_error_before_any_connection(db, dsn):
    conn = db.connect()
    backends = ("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()")
    before = {r[0] for r in conn.execute(backends)}
    for args, env in ((("status", "--target", dsn), clean_env()),
                      (("apply", "--target", dsn), clean_env()),
                      (("status",), clean_env(DATABASE_URL=dsn))):
        p = harness(*args, env=env)
        assert p.returncode == EXIT_USAGE, (args, p.stderr)
        assert "malformed DSN" in p.stderr and "Traceback" not in p.stderr
    assert "in DATABASE_URL" in p.stderr
    if "schema=" in dsn:    # a Prisma URL: the message says which parameter to drop
        assert "schema is a Prisma URL parameter" in p.stderr
    # no client connected meanwhile (a backend of an earlier test may end; none may start)
    assert {r[0] for r in conn.execute(backends)} - before == set()


def test_missing_checkpoint_or_previous_file_is_a_usage_error(db, scratch_dir):
    missing = str(scratch_dir / "no-such-checkpoint.json")
    p = harness("verify", "--target", db.dsn(), "--checkpoint", missing)
    assert p.returncode == EXIT_USAGE and "does not exist" in p.stderr, p.stderr
    p = harness("checkpoint", "--target", db.dsn(), "--previous", missing)
    assert p.returncode == EXIT_USAGE and "does not exist" in p.stderr, p.stderr


# ------------------------------------------------------------------ auth and reachability


@pytest.fixture
def password_role(db):
    """A LOGIN role whose connections over TCP must give its password (scram), by one
    pg_hba.conf line placed before the cluster's trust lines; removed afterwards."""
    role, password = "pw_login", "right-password"
    hba = Path(db.cluster.datadir) / "pg_hba.conf"
    original = hba.read_text()
    su = db.connect("superuser")
    su.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
    su.execute("SELECT pg_reload_conf()")
    try:
        yield role, password
    finally:
        hba.write_text(original)
        su.execute("SELECT pg_reload_conf()")
        su.execute(f"DROP ROLE {role}")


def test_wrong_password_exits_6_and_a_closed_port_exits_4(db, password_role):
    role, password = password_role
    port = db.cluster.port
    p = harness("status", "--target",
                f"postgresql://{role}:wrong@127.0.0.1:{port}/{db.name}")
    assert p.returncode == EXIT_AUTH, p.stderr
    assert "password authentication failed" in p.stderr and "wrong" not in first_line(p)
    # the same through the libpq variables
    p = harness("status", env=pg_env(db, PGUSER=role, PGPASSWORD="wrong"))
    assert p.returncode == EXIT_AUTH, p.stderr
    # the right password gets past authentication (whatever the role may then read)
    p = harness("status", "--target",
                f"postgresql://{role}:{password}@127.0.0.1:{port}/{db.name}")
    assert p.returncode not in (EXIT_AUTH, EXIT_SERVER), p.stderr
    # a port nobody listens on: unreachable, not an authentication failure
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    t0 = time.monotonic()
    p = harness("status", "--target", f"postgresql://{OWNER}@127.0.0.1:{closed}/{db.name}")
    assert p.returncode == EXIT_SERVER, p.stderr
    assert time.monotonic() - t0 < DEFAULT_CONNECT_TIMEOUT and "Traceback" not in p.stderr


@pytest.mark.slow
def test_a_server_that_never_answers_fails_within_the_connect_timeout():
    """A port that accepts TCP connections but never answers (a listening socket
    nobody reads): libpq would wait forever; the default connect_timeout ends it;
    PGCONNECT_TIMEOUT, like the DSN's own connect_timeout, overrides the default."""
    assert "connect_timeout=10" in with_connect_timeout("postgresql://u@h/db")
    assert with_connect_timeout("host=h connect_timeout=3") == "host=h connect_timeout=3"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        url = f"postgresql://nobody@127.0.0.1:{port}/x"
        for env, limit in ((clean_env(PGCONNECT_TIMEOUT=2), (1.5, 8)),
                           (clean_env(), (DEFAULT_CONNECT_TIMEOUT - 0.5,
                                          DEFAULT_CONNECT_TIMEOUT + 8))):
            t0 = time.monotonic()
            p = harness("status", "--target", url, env=env, timeout=60)
            took = time.monotonic() - t0
            assert p.returncode == EXIT_SERVER, p.stderr
            assert limit[0] <= took <= limit[1], (took, p.stderr)


# ------------------------------------------------------------------ --version and --help


def test_version_names_the_pack_and_the_chain_head(sql_root):
    from importlib.metadata import version
    p = harness("--version")
    assert p.returncode == EXIT_OK, p.stderr
    assert version("forgea-schema-pack") in p.stdout
    assert A.load_chain(sql_root)[-1].id in p.stdout


def help_text(*args) -> str:
    """``harness ARGS --help``, in process (help reads no database)."""
    from click.testing import CliRunner

    from harness.cli import cli
    r = CliRunner().invoke(cli, [*args, "--help"], prog_name="harness")
    assert r.exit_code == 0, r.output
    return r.output


def test_each_command_help_lists_only_the_exit_codes_it_can_return():
    for cmd, codes in COMMAND_EXIT_CODES.items():
        out = help_text(cmd)
        listed = {int(line.split()[0]) for line in
                  out.split(f"Exit codes of {cmd}:", 1)[1].splitlines()
                  if line.strip() and line.strip().split()[0].isdigit()
                  and line.startswith("  ") and not line.startswith("       ")}
        assert listed == set(codes), (cmd, listed)
    for cmd in ("lint", "stop", "schema"):
        out = help_text(cmd)
        for code in ("4", "6"):
            assert f"  {code}  " not in out, (cmd, code)
        assert "PostgreSQL server could not be" not in out
    assert "  4  " not in harness("lint", "--help").stdout   # the real CLI says the same
    out = help_text("apply")
    for code in ("3", "4", "6", "130", "143"):
        assert f"  {code}  " in out


# ------------------------------------------------------------------ who applied, the plan


def test_status_names_who_applied_each_file_in_text_and_json(baseline_db, sql_root):
    env = clean_env(HARNESS_SQL_ROOT=sql_root)
    p = harness("apply", "--target", baseline_db.dsn(), env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    p = harness("status", "--target", baseline_db.dsn(), "--json", env=env)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert {a["applied_by"] for a in st["applied"]} == {OWNER}
    assert all(a["applied_at"] for a in st["applied"])
    p = harness("status", "--target", baseline_db.dsn(), env=env)
    last = A.load_chain(sql_root)[-1].id
    assert any(line.strip().startswith(last) and f" by {OWNER}" in line
               for line in p.stdout.splitlines()), p.stdout


def test_plan_json_lists_the_pending_files_with_their_directives(baseline_db, sql_root):
    env = clean_env(HARNESS_SQL_ROOT=sql_root)
    p = harness("plan", "--target", baseline_db.dsn(), "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert first_line(p).startswith("harness: target ")
    doc = json.loads(p.stdout)
    applied = {a["id"] for a in A.status(baseline_db.dsn(), sql_root)["applied"]}
    files = [f for f in A.load_chain(sql_root) if f.id not in applied]
    assert [x["id"] for x in doc["pending"]] == [f.id for f in files]
    for x, f in zip(doc["pending"], files):
        assert x["no_transaction"] == f.no_transaction and x["action"] == "apply"
        assert [d["name"] for d in x["directives"]] == [d.name for d in f.directives]
        assert ({"name": "no-transaction", "args": ""} in x["directives"]) == f.no_transaction
    assert any(x["no_transaction"] for x in doc["pending"])
