"""The DBA's psql roads (``plan --sql``, ``rollback --sql``) are as safe as the
harness: checked at run time against the state they were generated for, short
lock timeouts, the bookkeeping kept true; ``harness repair`` fixes the
bookkeeping explicitly; apply acts as the owner of the baseline's tables."""

from __future__ import annotations

from harness import apply as A
from harness import catalog
from harness.bookkeeping import bookkeeping_tables
from tests.chain_ids import BASELINE
from tests.helpers import run_psql
from tests.test_cli import harness


def bookkeeping(conn) -> dict:
    """Every bookkeeping table that exists, with its rows (as text, sorted)."""
    out = {}
    for schema, tables in bookkeeping_tables(conn).items():
        for t in tables:
            out[f"{schema}.{t}"] = sorted(str(r) for r in conn.execute(
                f'SELECT * FROM "{schema}"."{t}"').fetchall())
    return out


def plan_script(db, sql_root, *args) -> str:
    p = harness("plan", "--target", db.dsn(), "--sql", *args, sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_plan_script_on_the_wrong_database_changes_nothing_and_says_why(
        upstream_db, empty_db, pg_cluster, sql_root):
    script = plan_script(upstream_db, sql_root)
    assert script.splitlines()[0].startswith("-- harness plan for")
    assert "\\set ON_ERROR_STOP on" in script and "SET LOCAL lock_timeout = '100ms';" in script
    wrong = empty_db.connect()
    before = (catalog.snapshot(wrong), bookkeeping(wrong))
    r = run_psql(pg_cluster, empty_db.dsn(), script)
    assert r.returncode == 3, r.stderr
    assert "this script was generated for another database state" in r.stderr
    assert "re-run harness plan --sql against this database" in r.stderr
    assert "expected catalog fingerprint" in r.stderr
    assert (catalog.snapshot(wrong), bookkeeping(wrong)) == before
    assert wrong.execute("SELECT to_regnamespace('harness')").fetchone()[0] is None

    # the right database: adopted (proved at run time), the rest applied, status true
    r = run_psql(pg_cluster, upstream_db.dsn(), script)
    assert r.returncode == 0, r.stderr
    st = A.status(upstream_db.dsn(), sql_root)
    assert st["pending"] == [] and st["incomplete"] == []
    assert st["applied"][0]["id"] == BASELINE and st["applied"][0]["adopted"]
    p = harness("status", "--target", upstream_db.dsn(), sql_root=sql_root)
    assert p.returncode == 0, p.stdout
    # run again: the state it was made for is gone, and the check says so
    r = run_psql(pg_cluster, upstream_db.dsn(), script)
    assert r.returncode == 0 and "resuming" in r.stderr
