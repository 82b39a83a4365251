"""The harness CLI: exit codes and output contracts."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


from harness import apply as A
from harness import chain

REPO = Path(__file__).resolve().parent.parent


def harness(*args, sql_root=None, timeout=120):
    env = dict(os.environ)
    if sql_root:
        env["HARNESS_SQL_ROOT"] = str(sql_root)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_help_documents_every_exit_code():
    out = harness("--help").stdout
    for code in ("0  success", "1  a database error", "2  usage error", "3  refused",
                 "4  the PostgreSQL server"):
        assert code in out
    for cmd in ("apply", "rollback", "status", "plan", "lint", "verify", "bench", "stop"):
        assert cmd in out


def test_status_json_has_contract_shape_and_human_status_prints_dsn(baseline_db, sql_root):
    p = harness("status", "--target", baseline_db.dsn(), "--json", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert [a["id"] for a in st["applied"]] == ["V0001__baseline", "V0002__roles_and_archive"]
    assert st["drift"] == [] and all("id" in x for x in st["pending"])
    p = harness("status", "--target", baseline_db.dsn(), sql_root=sql_root)
    assert p.returncode == 0 and baseline_db.name in p.stdout and "psql" in p.stdout


def test_apply_rollback_exit_codes(baseline_db, sql_root):
    dsn = baseline_db.dsn()
    assert harness("apply", "--target", dsn, "--to", "V0003", sql_root=sql_root).returncode == 0
    p = harness("rollback", "--target", dsn, sql_root=sql_root)
    assert p.returncode == 2 and "--to" in p.stderr
    p = harness("rollback", "--target", dsn, "--to", "V0002", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    p = harness("apply", "--target", dsn, "--to", "V9999", sql_root=sql_root)
    assert p.returncode == 2 and "unknown migration version" in p.stderr
    assert harness("apply", "--bogus").returncode == 2


def test_drift_and_held_lock_exit_3_without_traceback(db, sql_root, tmp_path):
    root = tmp_path / "sql"
    shutil.copytree(sql_root, root)
    f = root / "migrations" / "V0002__roles_and_archive.sql"
    f.write_text(f.read_text() + "\n-- edited\n")
    p = harness("apply", "--target", db.dsn(), sql_root=root)
    assert p.returncode == 3 and "drift" in p.stderr and "Traceback" not in p.stderr
    p = harness("status", "--target", db.dsn(), sql_root=root)
    assert p.returncode == 1 and "DRIFT" in p.stdout

    holder = db.connect()
    holder.execute("SELECT pg_advisory_lock(%s::bigint)", (A.LOCK_KEY,))
    pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
    p = harness("apply", "--target", db.dsn(), "--lock-wait", "0.5", sql_root=sql_root)
    assert p.returncode == 3 and f"pid {pid}" in p.stderr and "Traceback" not in p.stderr


def test_database_error_is_one_clear_line_exit_1(db, sql_root, tmp_path):
    root = tmp_path / "sql"
    shutil.copytree(sql_root, root)
    (root / "migrations" / "V9990__bad.sql").write_text("-- bad\nSELECT * FROM \"Nope\";\n")
    (root / "rollback" / "V9990__bad.sql").write_text("-- undo\nSELECT 1;\n")
    p = harness("apply", "--target", db.dsn(), sql_root=root)
    assert p.returncode == 1
    assert "V9990__bad.sql:2: ERROR 42P01" in p.stderr and "Traceback" not in p.stderr


def test_unreachable_server_exits_4():
    p = harness("status", "--target", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert p.returncode == 4 and "Traceback" not in p.stderr


def test_plan_sql_is_a_psql_script_with_bookkeeping(baseline_db, sql_root):
    p = harness("plan", "--target", baseline_db.dsn(), "--sql", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    script = p.stdout
    assert "ON_ERROR_STOP" in script
    assert "V0003" in script and 'INSERT INTO harness."_harness_migration"' in script
    assert "CREATE SCHEMA harness" not in script   # the template has the schema already
    assert "V0001__baseline" not in script.split("-- =====", 1)[1].split("\n")[0]
    if shutil.which("psql") or Path("/usr/lib/postgresql/15/bin/psql").exists():
        psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
        r = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", baseline_db.dsn(),
                            "-f", "-"], input=script, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        st = A.status(baseline_db.dsn(), sql_root)
        assert st["pending"] == [] and st["drift"] == []


def test_verify_and_bench_are_click_commands_with_usage_exit_2():
    for cmd, option in (("verify", "--require-complete"), ("bench", "--pg-version")):
        p = harness(cmd, "--help")
        assert p.returncode == 0 and option in p.stdout and "Exit codes of" in p.stdout
    for args in (("verify", "--bogus"), ("bench", "--scale", "10"), ("bench", "--pg-version", "14"),
                 ("bench", "--pg-version", "17", "--target", "postgresql://u@127.0.0.1:1/x")):
        p = harness(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, args


def test_status_text_explains_what_json_reports_and_help_lists_its_exit_codes(
        db, sql_root, tmp_path):
    out = harness("status", "--help").stdout
    for part in ("applied", "pending", "incomplete", "drift", "rollback_changed", "unknown",
                 "out_of_order", "Exit codes of status:", "0  nothing above needs",
                 "1  drift, rollback_changed, unknown, out_of_order or incomplete",
                 "4  the PostgreSQL server"):
        assert part in out, part
    # a pending file older than the newest applied one (its record removed; the release
    # chain has no gap to plant one in), and a version this tree lacks
    root = sql_root
    late = chain.load_chain(sql_root)[-2].id
    conn = db.connect()
    for table in (A.MIGRATION_TABLE, A.HARNESS_TABLE):
        conn.execute(f"DELETE FROM {A.bk(table)} WHERE migration_id = %s", (late,))
    conn.execute(f"INSERT INTO {A.bk(A.MIGRATION_TABLE)} (migration_hash, migration_id, "
                 "applied_at_utc) VALUES ('f' || md5('x'), 'V9999__from_the_future', now())")
    p = harness("status", "--target", db.dsn(), "--json", sql_root=root)
    assert p.returncode == 1
    st = json.loads(p.stdout)
    assert st["out_of_order"] == [late]
    assert [u["id"] for u in st["unknown"]] == ["V9999__from_the_future"]
    p = harness("status", "--target", db.dsn(), sql_root=root)
    assert p.returncode == 1
    assert "OUT OF ORDER (1): pending files older than the newest applied one" in p.stdout
    assert f"  {late}" in p.stdout
    assert "UNKNOWN (1): applied in the database but not in this tree" in p.stdout
    assert "  V9999__from_the_future" in p.stdout
    conn.execute(f"DELETE FROM {A.bk(A.MIGRATION_TABLE)} "
                 "WHERE migration_id = 'V9999__from_the_future'")
    p = harness("status", "--target", db.dsn(), sql_root=root)
    assert p.returncode == 1 and "UNKNOWN" not in p.stdout   # out of order alone: exit 1
    p = harness("apply", "--target", db.dsn(), sql_root=root)
    assert p.returncode == 3 and "out of order" in p.stderr
