"""The DBA's psql roads (``plan --sql``, ``rollback --sql``) are as safe as the
harness: checked at run time against the state they were generated for, short
lock timeouts, the bookkeeping kept true; ``harness repair`` fixes the
bookkeeping explicitly; apply acts as the owner of the baseline's tables."""

from __future__ import annotations

import json
import time

from harness import apply as A
from harness import catalog, chain
from harness.bookkeeping import BOOKKEEPING_SQL, bookkeeping_tables
from harness.plan_sql import bookkeeping_sql
from harness.runner import created_indexes
from tests.chain_ids import BASELINE, CHAIN, version_of
from tests.helpers import run_psql
from tests.prodlike import seed_production_like, snapshot_rows
from tests.test_adoption import acls
from tests.test_cli import harness
from tests.test_lock_retries import AppReads, long_reader
from tests.test_no_transaction_recovery import hold_bookkeeping, index_state, records


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


def test_plan_script_behind_a_long_reader_keeps_app_reads_short_and_a_rerun_resumes(
        baseline_db, pg_cluster, sql_root):
    """The script's lock requests time out after 100ms (psql cannot retry): the
    app's reads of LabSession are never stalled a second, nothing of the blocked
    file commits, and the same script run again resumes where it stopped."""
    db = baseline_db
    locker = CHAIN["session_columns"]          # needs ACCESS EXCLUSIVE on LabSession
    script = plan_script(db, sql_root, "--to", version_of("session_columns"))
    reader, _pid = long_reader(db)
    runs = []
    with AppReads(db) as app:
        t_end = time.monotonic() + 5.0          # the report runs for ~5 s
        while True:
            if time.monotonic() >= t_end and reader.info.transaction_status:
                reader.commit()
            r = run_psql(pg_cluster, db.dsn(), script, timeout=120)
            runs.append(r)
            if r.returncode == 0 or len(runs) > 60:
                break
            assert r.returncode == 3 and "lock timeout" in r.stderr, r.stderr
            time.sleep(0.3)
    assert runs[-1].returncode == 0, runs[-1].stderr
    assert len(runs) > 1 and "resuming" in runs[-1].stderr
    print(f"app reads: {len(app.latencies)}, worst {app.worst:.3f}s; psql runs {len(runs)}")
    assert len(app.latencies) > 50
    assert app.worst < 1.0, f"the app was stalled {app.worst:.3f}s"
    st = A.status(db.dsn(), sql_root)
    assert st["current"] == locker and st["incomplete"] == []


def test_rollback_script_on_production_with_data_gives_its_rows_back_and_status_is_true(
        upstream_db, pg_cluster, sql_root):
    conn = upstream_db.connect()
    seed_production_like(conn)
    before = (catalog.snapshot(conn), snapshot_rows(conn), acls(conn))
    A.apply(upstream_db.dsn(), sql_root=sql_root)
    p = harness("rollback", "--target", upstream_db.dsn(), "--to", BASELINE, "--sql",
                sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    script = p.stdout
    assert "\\set ON_ERROR_STOP on" in script and "SET LOCAL lock_timeout = '100ms';" in script
    assert "SET forgea.rollback_preserve" not in script
    last = chain.load_chain(sql_root)[-1]
    assert script.index(f"roll back {last.id}") < script.index(f"roll back {CHAIN['roles']}")
    r = run_psql(pg_cluster, upstream_db.dsn(), script)
    assert r.returncode == 0, r.stderr
    after = (catalog.snapshot(conn), snapshot_rows(conn), acls(conn))
    assert catalog.diff(before[0], after[0], column_order=True) == []
    assert after[1:] == before[1:]
    p = harness("status", "--target", upstream_db.dsn(), "--json", sql_root=sql_root)
    assert p.returncode == 0, p.stdout
    st = json.loads(p.stdout)
    assert [a["id"] for a in st["applied"]] == [BASELINE] and st["incomplete"] == []
    # the bookkeeping is true: the harness applies the chain again from there
    assert A.apply(upstream_db.dsn(), sql_root=sql_root).applied[0] == CHAIN["roles"]
    p = harness("rollback", "--target", upstream_db.dsn(), "--steps", "1", "--preserve",
                "--sql", sql_root=sql_root)
    assert p.returncode == 0 and "SET forgea.rollback_preserve = on;" in p.stdout


def test_rollback_script_on_the_wrong_database_changes_nothing(db, baseline_db, pg_cluster,
                                                               sql_root):
    p = harness("rollback", "--target", db.dsn(), "--steps", "1", "--sql", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    conn = baseline_db.connect()
    before = (catalog.snapshot(conn), bookkeeping(conn))
    r = run_psql(pg_cluster, baseline_db.dsn(), p.stdout)
    assert r.returncode == 3 and "the bookkeeping differs; nothing was changed" in r.stderr
    assert "re-run harness rollback --sql against this database" in r.stderr
    assert (catalog.snapshot(conn), bookkeeping(conn)) == before


def false_adoption(db, baseline) -> None:
    """What the old plan script did on the wrong (empty) database: the adoption
    recorded with nothing behind it."""
    conn = db.connect()
    conn.execute("CREATE SCHEMA harness")
    conn.execute(BOOKKEEPING_SQL)
    conn.execute(bookkeeping_sql(baseline, adopted=True))


def repair_log(conn) -> list[tuple]:
    return conn.execute(
        'SELECT action, migration_id, reason, current_role_name, session_role_name '
        'FROM harness."_harness_repair_log" ORDER BY id').fetchall()


def test_repair_check_adoption_finds_and_undoes_a_false_adoption(empty_db, sql_root):
    baseline = chain.load_chain(sql_root)[0]
    false_adoption(empty_db, baseline)
    dsn = empty_db.dsn()
    assert harness("status", "--target", dsn, sql_root=sql_root).returncode == 0  # the lie
    p = harness("repair", "check-adoption", "--target", dsn, sql_root=sql_root)
    assert p.returncode == 1, p.stderr
    assert f"the adoption of {BASELINE} is FALSE" in p.stdout
    assert 'table "LabSession": missing' in p.stdout
    p = harness("repair", "check-adoption", "--target", dsn, "--fix", sql_root=sql_root)
    assert p.returncode == 2 and "--reason" in p.stderr
    conn = empty_db.connect()
    assert A.status(dsn, sql_root)["applied"][0]["adopted"]          # nothing changed
    p = harness("repair", "check-adoption", "--target", dsn, "--fix", "--reason",
                "plan script run against the wrong database", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    assert "the adoption record was removed" in p.stdout
    assert repair_log(conn) == [("remove-adoption", BASELINE,
                                 "plan script run against the wrong database",
                                 "forgea_owner", "forgea_owner")]
    assert A.status(dsn, sql_root)["applied"] == []
    r = A.apply(dsn, to=CHAIN["roles"], sql_root=sql_root)
    assert r.applied == [BASELINE, CHAIN["roles"]] and r.adopted == []
    p = harness("repair", "check-adoption", "--target", dsn, sql_root=sql_root)
    assert p.returncode == 0 and "no adoption is recorded" in p.stdout


def test_repair_check_adoption_confirms_a_true_adoption(upstream_db, sql_root):
    A.apply(upstream_db.dsn(), to=BASELINE, sql_root=sql_root)
    p = harness("repair", "check-adoption", "--target", upstream_db.dsn(), "--fix",
                "--reason", "audit", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    assert f"the adoption of {BASELINE} is true" in p.stdout
    assert A.status(upstream_db.dsn(), sql_root)["applied"][0]["adopted"]


def test_mark_applied_refuses_with_the_diff_until_the_file_ran_by_hand(
        baseline_db, pg_cluster, sql_root):
    dsn = baseline_db.dsn()
    f = chain.find(chain.load_chain(sql_root), CHAIN["legacy_hardening"])
    conn = baseline_db.connect()
    before = bookkeeping(conn)
    p = harness("repair", "mark-applied", f.id, "--target", dsn, "--reason", "ran by hand",
                sql_root=sql_root, timeout=300)
    assert p.returncode == 3, p.stderr
    assert f"refusing to mark {f.id} applied: the live database is not what the chain" \
        in p.stderr
    assert "missing (applied files has it, live does not)" in p.stderr
    assert bookkeeping(conn) == before
    # the DBA runs the file by hand, then records it
    r = run_psql(pg_cluster, dsn, "\\set ON_ERROR_STOP on\n" + f.sql)
    assert r.returncode == 0, r.stderr
    p = harness("repair", "mark-applied", f.id, "--target", dsn, "--reason", "ran by hand",
                sql_root=sql_root, timeout=300)
    assert p.returncode == 0, p.stderr
    st = A.status(dsn, sql_root)
    assert st["current"] == f.id and st["drift"] == []
    # rolling it back by hand: mark-pending refuses until the rollback file ran
    p = harness("repair", "mark-pending", f.id, "--target", dsn, "--reason", "rolled back",
                sql_root=sql_root, timeout=300)
    assert p.returncode == 3 and "unexpected" in p.stderr
    r = run_psql(pg_cluster, dsn, "\\set ON_ERROR_STOP on\n" + f.rollback_sql)
    assert r.returncode == 0, r.stderr
    p = harness("repair", "mark-pending", f.id, "--target", dsn, "--reason", "rolled back",
                sql_root=sql_root, timeout=300)
    assert p.returncode == 0, p.stderr
    assert A.status(dsn, sql_root)["current"] == CHAIN["roles"]
    assert [row[:3] for row in repair_log(conn)] == [
        ("mark-applied", f.id, "ran by hand"), ("mark-pending", f.id, "rolled back")]


def owners(conn) -> set[str]:
    """Every owner of the objects in public and harness (relations, functions,
    types, the schema harness)."""
    return {r[0] for r in conn.execute("""
        SELECT pg_get_userbyid(c.relowner) FROM pg_class c
        WHERE c.relnamespace IN ('public'::regnamespace, 'harness'::regnamespace)
        UNION SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
        UNION SELECT pg_get_userbyid(t.typowner) FROM pg_type t
        WHERE t.typnamespace = 'public'::regnamespace
        UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'harness'""")}


def test_superuser_apply_creates_every_object_as_the_table_owner(upstream_db, sql_root):
    p = harness("apply", "--target", upstream_db.dsn("superuser"), sql_root=sql_root,
                timeout=300)
    assert p.returncode == 0, p.stderr
    assert "running as forgea_owner (SET ROLE from postgres)" in p.stderr
    assert owners(upstream_db.connect()) == {"forgea_owner"}


def test_a_role_that_cannot_become_the_table_owner_is_refused_with_nothing_changed(
        upstream_db, login_roles, sql_root):
    conn = upstream_db.connect()
    before = (catalog.snapshot(conn), bookkeeping(conn))
    for cmd in (("apply",), ("plan",), ("plan", "--sql")):
        p = harness(*cmd, "--target", upstream_db.dsn("hostile"), sql_root=sql_root)
        assert p.returncode == 3, (cmd, p.stderr)
        assert "does not own the baseline's tables" in p.stderr
        assert "run as forgea_owner" in p.stderr
    assert (catalog.snapshot(conn), bookkeeping(conn)) == before


def test_repair_is_a_command_group_whose_changes_need_a_reason():
    out = harness("--help").stdout
    assert "repair" in out
    p = harness("repair", "--help")
    assert p.returncode == 0
    for cmd in ("check-adoption", "mark-applied", "mark-pending"):
        assert cmd in p.stdout
    p = harness("repair", "mark-applied", version_of("legacy_hardening"), "--target", "postgresql://u@127.0.0.1:1/x")
    assert p.returncode == 2 and "--reason" in p.stderr
    p = harness("repair", "mark-pending", "--help")
    assert p.returncode == 0 and "Exit codes of repair:" in p.stdout


def test_the_adoption_is_recorded_only_if_the_live_catalog_is_still_the_baseline(
        upstream_db, empty_db, pg_cluster, sql_root):
    """Even without the script's first check, the adoption's own transaction proves
    the catalog before it records anything."""
    script = plan_script(upstream_db, sql_root)
    head, rest = script.split("DO $harness_check$", 1)
    unchecked = head + rest.split("$harness_check$;", 1)[1]
    r = run_psql(pg_cluster, empty_db.dsn(), unchecked)
    assert r.returncode == 3, r.stderr
    assert f"refusing to record {BASELINE} as adopted" in r.stderr
    conn = empty_db.connect()
    assert conn.execute('SELECT count(*) FROM harness."_harness_migration"').fetchone()[0] == 0
    assert catalog.is_empty(catalog.snapshot(conn))
    assert A.status(empty_db.dsn(), sql_root)["applied"] == []


def test_a_no_transaction_file_stopped_in_the_script_is_incomplete_and_a_rerun_finishes_it(
        db, pg_cluster, sql_root):
    files = chain.load_chain(sql_root)
    f = next(g for g in files if g.no_transaction and created_indexes(g.sql))
    previous = files[files.index(f) - 1]
    A.rollback(db.dsn(), to=previous.id, sql_root=sql_root)
    script = plan_script(db, sql_root, "--to", f.id)
    conn = db.connect()
    blocker = hold_bookkeeping(db)       # the final record waits, hits lock_timeout
    try:
        r = run_psql(pg_cluster, db.dsn(), script)
    finally:
        blocker.rollback()
    assert r.returncode == 3 and "lock timeout" in r.stderr, r.stderr
    name = created_indexes(f.sql)[0]
    assert index_state(conn, name) == (True, True)       # its statements committed
    assert records(conn, f.id) == (0, "applying")       # recorded as in progress only
    st = A.status(db.dsn(), sql_root)
    assert [i["id"] for i in st["incomplete"]] == [f.id] and st["current"] == previous.id
    r = run_psql(pg_cluster, db.dsn(), script)
    assert r.returncode == 0 and "resuming" in r.stderr, r.stderr
    assert records(conn, f.id) == (1, "applied") and index_state(conn, name) == (True, True)
    st = A.status(db.dsn(), sql_root)
    assert st["incomplete"] == [] and st["current"] == f.id
