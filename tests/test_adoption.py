"""Adoption of production as the seven real Prisma migrations built it.

"Production" here is always ``tests/upstream.py``'s build of
``../shared/upstream/prisma/migrations`` (fixture ``upstream_db``), never the
pack's own V0001.
"""

import re

import pytest

from harness import apply as A
from harness import catalog, chain
from harness.errors import AdoptionMismatch, RollbackRefused
from tests import upstream
from tests.helpers import digests
from tests.prodlike import BASELINE_TABLES, seed_production_like, snapshot_rows

# Who may do what on production's objects: the effective privileges of every
# table and function (a NULL ACL is expanded to its default, so an explicit ACL
# that grants the same is equal).
ACLS = """
    SELECT 'table ' || c.relname, a.grantee::regrole::text, a.privilege_type
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY(%(tables)s)
    UNION ALL
    SELECT 'function ' || p.proname, a.grantee::regrole::text, a.privilege_type
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
         aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
    WHERE n.nspname = 'public'
    ORDER BY 1, 2, 3"""


def acls(conn):
    return conn.execute(ACLS, {"tables": list(BASELINE_TABLES)}).fetchall()


def prisma_rows(conn):
    return conn.execute(
        'SELECT "id", "checksum", "migration_name", "finished_at", "applied_steps_count", '
        '"logs", "rolled_back_at" FROM "_prisma_migrations" ORDER BY "migration_name"'
    ).fetchall()


def test_upstream_files_match_the_checksums_production_recorded(upstream_db):
    """The copies are byte-exact: the checksums Prisma recorded are the README's."""
    listed = dict((name, digest) for digest, name in re.findall(
        r"^([0-9a-f]{64})\s+(\S+)$", (upstream.UPSTREAM / "README.md").read_text(), re.M))
    conn = upstream_db.connect()
    recorded = dict(conn.execute(
        'SELECT "migration_name", "checksum" FROM "_prisma_migrations" '
        'WHERE "finished_at" IS NOT NULL AND "applied_steps_count" = 1 '
        'AND "rolled_back_at" IS NULL AND "logs" IS NULL').fetchall())
    assert len(listed) == 7 and recorded == listed


def test_baseline_builds_exactly_the_catalog_of_the_real_prisma_migrations(
        upstream_db, empty_db, sql_root):
    A.apply(empty_db.dsn(), to="V0001", sql_root=sql_root)
    ours = catalog.snapshot(empty_db.connect())
    production = catalog.snapshot(upstream_db.connect())
    assert catalog.diff(production, ours, column_order=True) == []
    # function source text too, byte for byte
    assert {k: f["body"] for k, f in ours["functions"].items()} == \
        {k: f["body"] for k, f in production["functions"].items()}
    assert len(production["functions"]) == 3 and len(production["tables"]) == 11


def test_adoption_keeps_every_row_and_applies_the_rest(upstream_db, sql_root):
    conn = upstream_db.connect()
    seed_production_like(conn)
    rows, prisma = snapshot_rows(conn), prisma_rows(conn)
    assert all(rows[t] for t in BASELINE_TABLES if t != "VerificationToken")
    r = A.apply(upstream_db.dsn(), sql_root=sql_root)
    assert r.adopted == ["V0001__baseline"]
    assert r.applied == [f.id for f in chain.load_chain(sql_root)[1:]]
    st = A.status(upstream_db.dsn(), sql_root)
    assert st["pending"] == [] and st["drift"] == []
    assert st["applied"][0]["id"] == "V0001__baseline" and st["applied"][0]["adopted"]
    assert not any(a["adopted"] for a in st["applied"][1:])
    assert snapshot_rows(conn) == rows
    assert prisma_rows(conn) == prisma


def test_round_trip_to_the_baseline_restores_the_upstream_catalog_rows_and_grants(
        upstream_db, sql_root):
    """apply -> rollback to V0001 -> the database is production again -> apply again."""
    conn = upstream_db.connect()
    seed_production_like(conn)
    before_catalog, before_rows, before_acls = (
        catalog.snapshot(conn), snapshot_rows(conn), acls(conn))
    A.apply(upstream_db.dsn(), sql_root=sql_root)
    migrated = catalog.snapshot(conn)
    assert acls(conn) != before_acls  # the pack grants and revokes

    r = A.rollback(upstream_db.dsn(), to="V0001", sql_root=sql_root)
    assert "V0001__baseline" not in r.rolled_back
    assert catalog.diff(before_catalog, catalog.snapshot(conn), column_order=True) == []
    assert snapshot_rows(conn) == before_rows
    assert acls(conn) == before_acls

    A.apply(upstream_db.dsn(), sql_root=sql_root)
    assert catalog.diff(migrated, catalog.snapshot(conn), column_order=True) == []
    assert snapshot_rows(conn) == before_rows


def test_dry_run_reports_adoption_and_changes_nothing(upstream_db, sql_root):
    conn = upstream_db.connect()
    snap = catalog.snapshot(conn)
    r = A.apply(upstream_db.dsn(), sql_root=sql_root, dry_run=True)
    assert r.adopted == ["V0001__baseline"] and r.planned and not r.applied
    assert catalog.diff(snap, catalog.snapshot(conn)) == []
    assert A.bookkeeping_tables(conn) == {}


MISMATCHES = {
    "column_dropped": ('ALTER TABLE "Lab" DROP COLUMN "epic"',
                       'column "Lab"."epic": missing (baseline has it, production does not)'),
    "column_added": ('ALTER TABLE "Lab" ADD COLUMN "difficulty" integer',
                     'column "Lab"."difficulty": unexpected (production has it'),
    "column_type": ('ALTER TABLE "Lab" ALTER COLUMN "epic" TYPE varchar(80)',
                    'column "Lab"."epic": type differs: production has character varying(80),'
                    ' baseline expects text'),
    "index_dropped": ('DROP INDEX "Lab_failureClass_idx"',
                      'index "Lab_failureClass_idx": missing'),
    "enum_label_changed": ("ALTER TYPE \"LabStatus\" RENAME VALUE 'DEFERRED' TO 'PAUSED'",
                           'enum "LabStatus": labels differs: production has [IN_PROGRESS,'
                           ' STUCK, VERIFIED_PASS, PAUSED]'),
}


def _refusal(db, sql_root, ddl):
    conn = db.connect()
    seed_production_like(conn)
    conn.execute(ddl)
    snap, rows = catalog.snapshot(conn), digests(conn, BASELINE_TABLES)
    with pytest.raises(AdoptionMismatch) as e:
        A.apply(db.dsn(), sql_root=sql_root)
    assert e.value.exit_code == 3
    assert catalog.diff(snap, catalog.snapshot(conn), column_order=True) == []
    assert digests(conn, BASELINE_TABLES) == rows
    assert A.bookkeeping_tables(conn) == {}
    assert conn.execute("SELECT to_regnamespace(%s)", (A.BOOKKEEPING_SCHEMA,)).fetchone()[0] \
        is None
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE "
                        "'\\_harness\\_adopt\\_%'").fetchone()[0] == 0
    return e.value.details


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_adoption_refuses_a_different_schema_names_both_sides_and_changes_nothing(
        upstream_db, sql_root, case):
    ddl, expected = MISMATCHES[case]
    details = _refusal(upstream_db, sql_root, ddl)
    assert len(details) == 1 and details[0].startswith(expected), details


def test_adoption_refusal_shows_a_changed_function_body_as_a_unified_diff(
        upstream_db, sql_root):
    """A hot-fixed guard in production: the DBA sees both texts, line by line."""
    details = _refusal(upstream_db, sql_root, """
        CREATE OR REPLACE FUNCTION prevent_destructive_action() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          RETURN NULL; -- hot fix: silently skip
        END;
        $$""")
    assert len(details) == 1, details
    lines = details[0].splitlines()
    assert lines[0] == ("function prevent_destructive_action(): body differs "
                        "(production vs baseline):")
    assert "    --- baseline" in lines and "    +++ production" in lines
    assert any(line.startswith("    -    'Action forbidden") for line in lines), lines
    assert any(line.startswith("    +") and "hot fix" in line for line in lines), lines


def test_adoption_refusal_shows_a_changed_trigger_definition_as_a_unified_diff(
        upstream_db, sql_root):
    details = _refusal(upstream_db, sql_root, """
        DROP TRIGGER resumebullet_immutable ON "ResumeBullet";
        CREATE TRIGGER resumebullet_immutable BEFORE DELETE ON "ResumeBullet"
        FOR EACH ROW EXECUTE FUNCTION prevent_destructive_action()""")
    assert len(details) == 1, details
    lines = details[0].splitlines()
    assert lines[0].startswith('trigger "resumebullet_immutable" on "ResumeBullet": '
                               "definition differs (production vs baseline)")
    assert any(line.startswith("    -") and "DELETE OR UPDATE" in line for line in lines), lines
    assert any(line.startswith("    +") and "BEFORE DELETE ON" in line for line in lines)


def test_rollback_of_an_adopted_baseline_is_refused(upstream_db, sql_root):
    conn = upstream_db.connect()
    seed_production_like(conn)
    rows = snapshot_rows(conn)
    A.apply(upstream_db.dsn(), to="V0002", sql_root=sql_root)
    with pytest.raises(RollbackRefused) as e:
        A.rollback(upstream_db.dsn(), steps=2, sql_root=sql_root)
    assert "adopted" in e.value.message and e.value.exit_code == 3
    assert [a["id"] for a in A.status(upstream_db.dsn(), sql_root)["applied"]] == \
        ["V0001__baseline", "V0002__roles_and_archive"]
    # rolling back above the baseline is still allowed
    assert A.rollback(upstream_db.dsn(), to="V0001", sql_root=sql_root).rolled_back == \
        ["V0002__roles_and_archive"]
    assert snapshot_rows(conn) == rows


def test_rolling_back_a_non_adopted_baseline_runs_its_rollback_file(empty_db, sql_root):
    A.apply(empty_db.dsn(), to="V0001", sql_root=sql_root)
    assert A.rollback(empty_db.dsn(), steps=1, sql_root=sql_root).rolled_back == \
        ["V0001__baseline"]
    conn = empty_db.connect()
    assert catalog.is_empty(catalog.snapshot(conn))
