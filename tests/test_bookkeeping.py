"""Where the harness keeps its bookkeeping: its own schema, never the app's ``public``.

yoyo's tables (``_yoyo_migration``, ``_yoyo_log``, ``_yoyo_version``, ``yoyo_lock``)
and ``_harness_migration`` live in schema ``harness``. A database migrated by an
earlier harness (bookkeeping in ``public``) is moved there, atomically, by the
first apply or rollback; until then the read-only commands read it where it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg import sql

from harness import servers
from harness import apply as A
from harness import chain
from harness import verify as V
from harness.errors import MigrationFailed, RefusedError

REPO = Path(__file__).resolve().parent.parent
SCHEMA = A.BOOKKEEPING_SCHEMA
NAMES = set(A.BOOKKEEPING_TABLES)

# The exact layout an earlier harness left in public: the statements yoyo-migrations 9
# ran (init_database, internal schema v2) and the harness's own table, unqualified,
# with the connection's default search_path.
LEGACY_DDL = """
CREATE TABLE "yoyo_lock" ("locked" INT DEFAULT 1, "ctime" TIMESTAMP,"pid" INT NOT NULL,
    PRIMARY KEY ("locked"));
CREATE TABLE "_yoyo_log" ("id" VARCHAR(36), "migration_hash" VARCHAR(64),
    "migration_id" VARCHAR(255), "operation" VARCHAR(10), "username" VARCHAR(255),
    "hostname" VARCHAR(255), "comment" VARCHAR(255), "created_at_utc" TIMESTAMP,
    PRIMARY KEY ("id"));
CREATE TABLE "_yoyo_version" ("version" INT NOT NULL PRIMARY KEY,
    "installed_at_utc" TIMESTAMP);
CREATE TABLE "_yoyo_migration" ("migration_hash" VARCHAR(64), "migration_id" VARCHAR(255),
    "applied_at_utc" TIMESTAMP, PRIMARY KEY ("migration_hash"));
CREATE TABLE IF NOT EXISTS _harness_migration (
    migration_id      text PRIMARY KEY,
    checksum          text NOT NULL,
    rollback_checksum text,
    adopted           boolean NOT NULL DEFAULT false,
    no_transaction    boolean NOT NULL DEFAULT false,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    applied_by        text NOT NULL DEFAULT current_user
);
"""


def relations(conn, schema: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s", (schema,))}


def bookkeeping_in(conn, schema: str) -> set[str]:
    return {r for r in relations(conn, schema) if r in NAMES or r.startswith("yoyo_tmp_")}


def applied(dsn, sql_root):
    return [(a["id"], a["checksum"], a["applied_at"], a["adopted"])
            for a in A.status(dsn, sql_root)["applied"]]


def counts(conn, schema: str) -> dict[str, int]:
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(t))).fetchone()[0] for t in sorted(NAMES)}


def make_legacy(conn) -> None:
    """Turn a database the harness migrated into the layout an earlier harness
    left: the same rows, in tables of the old shape, in public; no harness schema."""
    conn.execute("BEGIN")
    conn.execute(LEGACY_DDL)
    for t in sorted(NAMES):
        cols = sql.SQL(", ").join(sql.Identifier(r[0]) for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "ORDER BY attnum", (f'public."{t}"',)))
        conn.execute(sql.SQL("INSERT INTO public.{t} ({c}) SELECT {c} FROM {s}.{t}").format(
            t=sql.Identifier(t), c=cols, s=sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.execute("COMMIT")


def harness_cli(*args, sql_root=None):
    env = dict(os.environ, HARNESS_SQL_ROOT=str(sql_root)) if sql_root else None
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ new databases


def test_apply_on_an_empty_database_leaves_no_bookkeeping_in_public(empty_db, sql_root):
    p = harness_cli("apply", "--target", empty_db.dsn(), sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    conn = empty_db.connect()
    assert bookkeeping_in(conn, "public") == set()
    assert bookkeeping_in(conn, SCHEMA) == NAMES
    # the migrations still created their objects in public, unqualified
    assert {"User", "LabSession", "VerificationJob"} <= relations(conn, "public")
    assert relations(conn, SCHEMA) - NAMES <= {f"{t}_pkey" for t in NAMES}
    st = A.status(empty_db.dsn(), sql_root)
    assert st["bookkeeping_schema"] == SCHEMA and st["pending"] == []
    assert [a["id"] for a in st["applied"]] == [f.id for f in chain.load_chain(sql_root)]
    # owned by the migration role; only forgea_readonly may use the schema, and read
    # only the two tables status and verify read
    owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace "
                         "WHERE nspname = %s", (SCHEMA,)).fetchone()[0]
    assert owner == "forgea_owner"
    for role in ("forgea_app", "forgea_worker", "public"):
        assert not conn.execute("SELECT has_schema_privilege(%s, %s, 'USAGE')",
                                (role, SCHEMA)).fetchone()[0]
    assert conn.execute("SELECT has_schema_privilege('forgea_readonly', %s, 'USAGE')",
                        (SCHEMA,)).fetchone()[0]
    readable = {t for t in NAMES if conn.execute(
        "SELECT has_table_privilege('forgea_readonly', %s, 'SELECT')",
        (f'{SCHEMA}."{t}"',)).fetchone()[0]}
    assert readable == {"_yoyo_migration", "_harness_migration"}
    assert not any(conn.execute(
        "SELECT has_table_privilege('forgea_readonly', %s, %s)",
        (f'{SCHEMA}."{t}"', p)).fetchone()[0]
        for t in NAMES for p in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"))


def test_bookkeeping_is_readable_by_yoyo_pointed_at_the_schema(db):
    """yoyo's own ``?schema=`` option sets the search_path: its tables are complete."""
    conn = db.connect()
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
    version = conn.execute('SELECT max("version") FROM "_yoyo_version"').fetchone()[0]
    marks = conn.execute('SELECT count(*) FROM "_yoyo_migration"').fetchone()[0]
    logs = conn.execute("SELECT count(*) FROM \"_yoyo_log\" WHERE operation = 'apply'"
                        ).fetchone()[0]
    assert version == 2 and marks == logs == len(A.status(db.dsn())["applied"])


# ------------------------------------------------------------------ legacy layout


def test_legacy_bookkeeping_in_public_is_read_then_moved_by_apply(baseline_db, sql_root):
    dsn = baseline_db.dsn()
    conn = baseline_db.connect()
    before = applied(dsn, sql_root)
    assert [b[0] for b in before] == ["V0001__baseline", "V0002__roles_and_archive"]
    make_legacy(conn)
    assert bookkeeping_in(conn, "public") == NAMES
    legacy_counts = counts(conn, "public")
    # read-only commands read the legacy layout where it is, and change nothing
    st = A.status(dsn, sql_root)
    assert st["bookkeeping_schema"] == "public"
    assert applied(dsn, sql_root) == before
    p = harness_cli("status", "--json", "--target", dsn, sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    assert bookkeeping_in(conn, "public") == NAMES
    rep = V.verify(dsn, sql_root=sql_root, require_complete=False)
    assert rep.by_name("migration_chain").status != "fail", V.render_table(rep)

    p = harness_cli("apply", "--target", dsn, "--to", "V0004", sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    assert "moved the harness bookkeeping from schema public to schema harness" in p.stderr
    assert bookkeeping_in(conn, "public") == set()
    assert bookkeeping_in(conn, SCHEMA) == NAMES
    after = applied(dsn, sql_root)
    assert after[:2] == before          # same ids, checksums, applied_at, adopted
    assert [a[0] for a in after[2:]] == ["V0003__legacy_append_only_hardening",
                                        "V0004__lab_version"]
    moved = counts(conn, SCHEMA)
    assert moved["_yoyo_log"] == legacy_counts["_yoyo_log"] + 2
    assert moved["_yoyo_version"] == legacy_counts["_yoyo_version"] == 1
    assert A.status(dsn, sql_root)["bookkeeping_schema"] == SCHEMA


def test_legacy_bookkeeping_is_moved_by_rollback(baseline_db, sql_root):
    dsn = baseline_db.dsn()
    conn = baseline_db.connect()
    make_legacy(conn)
    r = A.rollback(dsn, steps=1, sql_root=sql_root)
    assert r.rolled_back == ["V0002__roles_and_archive"]
    assert bookkeeping_in(conn, "public") == set()
    assert [a[0] for a in applied(dsn, sql_root)] == ["V0001__baseline"]


def test_legacy_move_is_atomic_when_a_table_cannot_be_locked(baseline_db, sql_root):
    dsn = baseline_db.dsn()
    conn = baseline_db.connect()
    make_legacy(conn)
    before = applied(dsn, sql_root)
    # a reader holds the table moved last: the move fails after the others were
    # moved inside its transaction
    order = A.bookkeeping_tables(conn)["public"]
    reader = baseline_db.connect(autocommit=False)
    reader.execute(sql.SQL("SELECT * FROM public.{}").format(sql.Identifier(order[-1])))
    with pytest.raises(MigrationFailed) as e:
        A.apply(dsn, to="V0003", sql_root=sql_root, lock_timeout="300ms")
    assert e.value.sqlstate == "55P03" and "nothing was changed" in e.value.message
    assert bookkeeping_in(conn, "public") == NAMES
    assert conn.execute("SELECT to_regnamespace(%s)", (SCHEMA,)).fetchone()[0] is None
    assert applied(dsn, sql_root) == before
    assert conn.execute("""SELECT to_regproc('forbid_ledger_mutation')""").fetchone()[0] is None
    reader.rollback()
    assert A.apply(dsn, to="V0003", sql_root=sql_root).applied == [
        "V0003__legacy_append_only_hardening"]
    assert bookkeeping_in(conn, "public") == set()
    assert applied(dsn, sql_root)[:2] == before


def test_bookkeeping_in_both_schemas_is_refused(db, sql_root):
    """An older harness run against a moved database recreates empty tables in public."""
    conn = db.connect()
    conn.execute(LEGACY_DDL)
    with pytest.raises(RefusedError) as e:
        A.apply(db.dsn(), sql_root=sql_root)
    assert e.value.exit_code == 3
    text = e.value.render()
    assert "public._yoyo_migration: 0 row(s)" in text and "harness._yoyo_migration" in text
    assert A.status(db.dsn(), sql_root)["bookkeeping_schema"] == SCHEMA


def test_plan_sql_moves_a_legacy_layout_and_psql_runs_it(baseline_db, sql_root):
    psql = str(servers.find_bin_dir(18) / "psql")  # the embedded 18 always has one
    conn = baseline_db.connect()
    make_legacy(conn)
    before = applied(baseline_db.dsn(), sql_root)
    p = harness_cli("plan", "--target", baseline_db.dsn(), "--to", "V0003", "--sql",
                    sql_root=sql_root)
    assert p.returncode == 0, p.stderr
    script = p.stdout
    assert "CREATE SCHEMA harness;" in script
    assert 'ALTER TABLE public."_yoyo_migration" SET SCHEMA harness;' in script
    assert 'INSERT INTO harness."_harness_migration"' in script
    r = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", baseline_db.dsn(),
                        "-f", "-"], input=script, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert bookkeeping_in(conn, "public") == set()
    after = applied(baseline_db.dsn(), sql_root)
    assert after[:2] == before and after[2][0] == "V0003__legacy_append_only_hardening"


# ------------------------------------------------------------------ privileges


def test_owner_without_create_on_the_database_is_refused_clearly(empty_db, sql_root):
    su = empty_db.connect("superuser")
    su.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
        sql.Identifier(empty_db.name), sql.Identifier("postgres")))
    su.execute("GRANT USAGE, CREATE ON SCHEMA public TO forgea_owner")
    p = harness_cli("apply", "--target", empty_db.dsn(), "--to", "V0001", sql_root=sql_root)
    assert p.returncode == 3, p.stderr
    assert "CREATE privilege on database" in p.stderr
    assert f'GRANT CREATE ON DATABASE "{empty_db.name}" TO "forgea_owner"' in p.stderr
    assert f'CREATE SCHEMA {SCHEMA} AUTHORIZATION "forgea_owner"' in p.stderr
    conn = empty_db.connect()
    assert relations(conn, "public") == set()       # nothing was changed
    assert conn.execute("SELECT to_regnamespace(%s)", (SCHEMA,)).fetchone()[0] is None
    # a DBA creates the schema for the migration role: it is used as it is
    su.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION forgea_owner").format(
        sql.Identifier(SCHEMA)))
    assert A.apply(empty_db.dsn(), to="V0001", sql_root=sql_root).applied == [
        "V0001__baseline"]
    assert bookkeeping_in(conn, SCHEMA) == NAMES and bookkeeping_in(conn, "public") == set()


@pytest.mark.parametrize("grant", [
    "GRANT USAGE ON SCHEMA harness TO forgea_worker",
    "GRANT SELECT ON harness._yoyo_log TO forgea_readonly",
    "GRANT CREATE ON SCHEMA harness TO forgea_readonly",
    "GRANT SELECT ON harness._harness_migration TO forgea_app",
    "GRANT UPDATE (checksum) ON harness._harness_migration TO forgea_worker",
])
def test_verify_fails_on_any_grant_on_the_bookkeeping(db, grant):
    assert V.verify(db.dsn()).ok
    db.connect().execute(grant)
    rep = V.verify(db.dsn())
    assert not rep.ok
    failed = {c.name for c in rep.checks if c.status == "fail"}
    assert failed & {"schema_privileges", "table_privileges", "column_privileges"}, \
        V.render_table(rep)
    assert "harness" in V.render_table(rep)
