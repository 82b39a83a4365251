"""status, verify and plan for the roles that must run them: a forgea_readonly login
on a migrated database, the same on a hot standby (a physical replica made with
pg_basebackup), and plan for a role without CREATE on the database."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import psycopg
import pytest

from harness import chain, reference, servers
from harness import verify as V
from harness.cli import main as cli_main
from harness.errors import EXIT_OK, EXIT_REFUSED
from tests.builders import seed_world


def run_cli(*args) -> tuple[int, str, str]:
    """``harness ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def seeded_cache(tmp_path, monkeypatch, reference_snapshot, pg_version, sql_root):
    """$HARNESS_CACHE_DIR holding the reference of the whole chain (taken by the session
    fixture), so that verify's definitions check runs without building it again."""
    files, _ = chain.scan(sql_root)
    path = tmp_path / "cache" / "reference"
    path.mkdir(parents=True, mode=0o700)
    (tmp_path / "cache").chmod(0o700)
    (path / f"{reference._digest(pg_version, files)}.json").write_text(
        json.dumps(reference_snapshot))
    monkeypatch.setenv(reference.CACHE_ENV, str(tmp_path / "cache"))
    return path


def assert_passes_as_reader(dsn: str):
    """status and verify exit 0 through the CLI; verify's only check not run is the one
    reading a table forgea_readonly may not read, and the definitions check ran."""
    code, out, err = run_cli("status", "--target", dsn)
    assert code == EXIT_OK, out + err
    assert "pending (0)" in out
    code, out, err = run_cli("verify", "--target", dsn, "--json")
    doc = json.loads(out)
    assert code == EXIT_OK, out + err
    assert doc["could_not_run"] == ["restorable_values"], out
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert statuses["definitions"] == "info" and statuses["migration_chain"] == "pass"
    assert statuses["lab_attempt_chain_recomputed"] == "info"


def test_status_and_verify_pass_as_the_readonly_login(db, seeded_cache):
    seed_world(db)
    assert_passes_as_reader(db.dsn("readonly"))


def test_without_the_bookkeeping_grant_the_checks_built_on_it_say_so_by_name(db):
    seed_world(db)
    db.connect("owner").execute("REVOKE USAGE ON SCHEMA harness FROM forgea_readonly")
    rep = V.verify(db.dsn("readonly"), reference_snapshot=None)
    for name in ("migration_chain", "guard_triggers"):
        [f] = rep.by_name(name).findings
        assert rep.by_name(name).status == "could_not_run"
        assert "permission denied for schema harness" in f["message"], V.render_table(rep)
    assert rep.by_name("lab_attempt_chain_recomputed").status == "info"
    assert rep.by_name("schema_privileges").status == "info"   # the missing grant, named
    assert rep.exit_code == EXIT_OK


def _standby_of(primary: servers.Cluster, entry: Path) -> servers.Cluster:
    """A hot standby of ``primary``: pg_basebackup -R (standby.signal, primary_conninfo)."""
    standby = servers.Cluster(primary.version, primary.bin_dir, entry / "data", throwaway=True)
    standby._prepare_dir()
    # the npm builds of 16 and 17 ship no pg_basebackup: 18's client backs up older servers
    tool = primary.bin_dir / "pg_basebackup"
    if not tool.is_file():
        tool = servers.find_bin_dir(18) / "pg_basebackup"
    servers._run([str(tool), "-D", str(standby.datadir),
                  "-h", "127.0.0.1", "-p", str(primary.port), "-U", servers.SUPERUSER,
                  "-X", "stream", "-R", "-c", "fast"], timeout=600)
    assert (standby.datadir / "standby.signal").exists()
    with (standby.datadir / "postgresql.conf").open("a") as conf:
        conf.write(f"unix_socket_directories = '{standby.datadir}'\nhot_standby = on\n")
    standby.start()
    return standby


@pytest.mark.slow
def test_status_and_verify_pass_as_the_readonly_login_on_a_hot_standby(
        db, pg_cluster, seeded_cache, scratch_dir):
    seed_world(db)
    standby = _standby_of(pg_cluster, scratch_dir)
    try:
        dsn = standby.dsn(user="readonly_login", dbname=db.name)
        for _ in range(100):   # the clone's rows reach the standby by streaming
            with contextlib.suppress(psycopg.OperationalError), \
                    psycopg.connect(dsn, autocommit=True) as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                if conn.execute('SELECT count(*) FROM "LabAttempt"').fetchone()[0] == 4:
                    break
            time.sleep(0.1)
        with psycopg.connect(dsn, autocommit=True) as conn, \
                pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TEMP TABLE nope (id int)")
        assert_passes_as_reader(dsn)
        # a checkpoint can be taken there, and verified against
        kept = scratch_dir / "checkpoint.json"
        code, out, err = run_cli("checkpoint", "--target", dsn, "--no-record", "--out",
                                 str(kept))
        assert code == EXIT_OK and "2 sessions, 4 rows" in err, out + err
        code, out, err = run_cli("verify", "--target", dsn, "--no-reference",
                                 "--checkpoint", str(kept))
        assert code == EXIT_OK, out + err
        # the owner too: nothing verify does needs a write
        code, out, err = run_cli("verify", "--target", standby.dsn(user="forgea_owner",
                                                                   dbname=db.name))
        assert code == EXIT_OK and "verify: OK" in out, out + err
    finally:
        standby.destroy()


def test_plan_without_create_on_the_database_names_the_grant(upstream_db):
    """Adoption compares production with the baseline built in a scratch schema: the
    tables' owner without CREATE on the database is told which privilege and which
    GRANT (a role that is not the owner is told to run as the owner first)."""
    from psycopg import sql as pgsql
    su = upstream_db.connect("superuser")
    su.execute(pgsql.SQL("ALTER DATABASE {} OWNER TO postgres").format(
        pgsql.Identifier(upstream_db.name)))
    su.execute(pgsql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(
        pgsql.Identifier(upstream_db.name)))
    code, out, err = run_cli("plan", "--target", upstream_db.dsn("owner"))
    assert code == EXIT_REFUSED, out + err
    assert "lacks the CREATE privilege on database" in err
    assert f'GRANT CREATE ON DATABASE "{upstream_db.name}" TO "forgea_owner";' in err
    code, out, err = run_cli("plan", "--target", upstream_db.dsn("readonly"))
    assert code == EXIT_REFUSED and "does not own the baseline's tables" in err, out + err


def test_apply_warns_and_goes_on_when_it_cannot_grant_the_bookkeeping_to_the_reader(
        empty_db, sql_root):
    """A DBA created schema harness for the migration role without giving it away:
    the harness cannot grant USAGE on it, says what to run, and applies the chain."""
    from harness import apply as A
    su = empty_db.connect("superuser")
    su.execute("CREATE SCHEMA harness")
    su.execute("GRANT USAGE, CREATE ON SCHEMA harness TO forgea_owner")
    err = io.StringIO()
    r = A.apply(empty_db.dsn(), sql_root=sql_root, err=err)
    assert r.applied and not A.status(empty_db.dsn(), sql_root)["pending"]
    assert err.getvalue().count("warning: cannot let forgea_readonly read the bookkeeping") == 1
    assert "GRANT USAGE ON SCHEMA harness TO forgea_readonly;" in err.getvalue()
    assert "no privileges were granted" not in err.getvalue()


def test_status_as_a_reader_without_the_grant_names_it(db):
    db.connect("owner").execute("REVOKE USAGE ON SCHEMA harness FROM forgea_readonly")
    code, out, err = run_cli("status", "--target", db.dsn("readonly"))
    assert code == 1, out + err
    assert "cannot read the harness bookkeeping: permission denied for schema harness" in err
    assert "GRANT USAGE ON SCHEMA harness TO forgea_readonly;" in err
