"""Adoption of a production database that Prisma built (the baseline facts)."""

import uuid

import pytest

from harness import apply as A
from harness import catalog, chain
from harness.errors import AdoptionMismatch, RollbackRefused

BASELINE_TABLES = ["User", "Account", "Session", "VerificationToken", "AuthIdentity",
                   "AuthSession", "Lab", "LabSession", "VerificationLog", "ResumeBullet",
                   "AuditLog"]


def build_production(conn, sql_root):
    """A database as Prisma left it: the baseline schema, _prisma_migrations, rows everywhere."""
    conn.execute((sql_root / "migrations" / "V0001__baseline.sql").read_text())
    conn.execute("""
        CREATE TABLE "_prisma_migrations" (
            id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL,
            finished_at timestamptz, migration_name varchar(255) NOT NULL,
            logs text, rolled_back_at timestamptz,
            started_at timestamptz NOT NULL DEFAULT now(),
            applied_steps_count integer NOT NULL DEFAULT 0)""")
    for name in ["20260124_init_trust_schema", "20260125_add_immutability_triggers",
                 "20260127_add_auth_models", "20260129_add_auditlog_immutability_trigger",
                 "20260201_auditlog_actor_support", "20260205_lab_session_lifecycle_guard",
                 "20260209_identity_auth_tables"]:
        conn.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, "
                     "finished_at, applied_steps_count) VALUES (%s, %s, %s, now(), 1)",
                     (str(uuid.uuid4()), "0" * 64, name))
    u, lab, s = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    conn.execute('INSERT INTO "User" (id, email, "githubId") VALUES (%s, %s, %s)',
                 (u, "dev@example.com", "12345"))
    conn.execute('INSERT INTO "Account" (id, "userId", type, provider, "providerAccountId", '
                 'access_token) VALUES (%s, %s, %s, %s, %s, %s)',
                 ("acc1", u, "oauth", "github", "12345", "gho_secret"))
    conn.execute('INSERT INTO "Session" (id, "sessionToken", "userId", expires) '
                 "VALUES ('s1', 'tok1', %s, now() + interval '1 day')", (u,))
    conn.execute('INSERT INTO "VerificationToken" (identifier, token, expires) '
                 "VALUES ('dev@example.com', 'vt1', now() + interval '1 hour')")
    conn.execute('INSERT INTO "AuthIdentity" (id, "userId", provider, "providerUserId") '
                 "VALUES (%s, %s, 'GITHUB', '12345')", (uuid.uuid4(), u))
    conn.execute('INSERT INTO "AuthSession" (id, "sessionToken", "userId", expires) '
                 "VALUES (%s, 'atok1', %s, now() + interval '1 day')", (uuid.uuid4(), u))
    conn.execute('INSERT INTO "Lab" (id, title, epic, "failureClass", "sourceGithubIssueUrl", '
                 '"repoVersion", "baseRepoUrl", constraints) VALUES (%s, %s, %s, '
                 "'RESOURCE_LEAK', 'https://github.com/forgea/labs/issues/1', 'v1', "
                 "'https://github.com/forgea/lab-1', '{\"maxMinutes\": 60}')",
                 (lab, "Leaky pool", "Resources"))
    conn.execute('INSERT INTO "LabSession" (id, "userId", "labId", "userForkUrl") '
                 "VALUES (%s, %s, %s, 'https://github.com/Dev/lab-1.git')", (s, u, lab))
    conn.execute('INSERT INTO "VerificationLog" (id, "sessionId", "commitSha", "prDiff", '
                 '"ciOutput") VALUES (%s, %s, %s, %s, %s)',
                 (uuid.uuid4(), s, "a" * 40, "diff --git a b", '{"ok": false}'))
    conn.execute('INSERT INTO "ResumeBullet" (id, "sessionId", "bulletText", "atsKeywords") '
                 "VALUES (%s, %s, 'Fixed a leak', ARRAY['leak'])", (uuid.uuid4(), s))
    conn.execute('INSERT INTO "AuditLog" (id, "userId", action, metadata, "actorId") '
                 "VALUES (%s, %s, 'login', '{}', 'user:1')", (uuid.uuid4(), u))


def row_data(conn):
    out = {}
    for t in BASELINE_TABLES:
        cols = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum", (f'"{t}"',)).fetchall()]
        baseline_cols = ", ".join(f'"{c}"::text' for c in cols)
        out[t] = sorted(conn.execute(f'SELECT {baseline_cols} FROM "{t}"').fetchall())
    return out


def test_adoption_records_baseline_keeps_data_and_applies_the_rest(empty_db, sql_root):
    conn = empty_db.connect()
    build_production(conn, sql_root)
    before = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
              for t in BASELINE_TABLES}
    assert all(n > 0 for n in before.values())
    users = conn.execute('SELECT id, email, "githubId" FROM "User"').fetchall()
    r = A.apply(empty_db.dsn(), sql_root=sql_root)
    assert r.adopted == ["V0001__baseline"]
    assert "V0001__baseline" not in r.applied
    files = chain.load_chain(sql_root)
    assert r.applied == [f.id for f in files[1:]]
    st = A.status(empty_db.dsn(), sql_root)
    assert st["pending"] == [] and st["drift"] == []
    assert st["applied"][0]["id"] == "V0001__baseline" and st["applied"][0]["adopted"]
    assert not any(a["adopted"] for a in st["applied"][1:])
    after = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
             for t in BASELINE_TABLES}
    assert after == before
    assert conn.execute('SELECT id, email, "githubId" FROM "User"').fetchall() == users
    assert conn.execute("SELECT count(*) FROM _prisma_migrations").fetchone()[0] == 7


def test_dry_run_reports_adoption_and_changes_nothing(empty_db, sql_root):
    conn = empty_db.connect()
    build_production(conn, sql_root)
    snap = catalog.snapshot(conn)
    r = A.apply(empty_db.dsn(), sql_root=sql_root, dry_run=True)
    assert r.adopted == ["V0001__baseline"] and r.planned and not r.applied
    assert catalog.diff(snap, catalog.snapshot(conn)) == []
    assert A.bookkeeping_tables(conn) == {}


MISMATCHES = {
    "column_dropped": ('ALTER TABLE "Lab" DROP COLUMN "epic"', 'column "Lab"."epic": missing'),
    "column_added": ('ALTER TABLE "Lab" ADD COLUMN "difficulty" integer',
                     'column "Lab"."difficulty": unexpected'),
    "index_dropped": ('DROP INDEX "Lab_failureClass_idx"', 'index "Lab_failureClass_idx": missing'),
    "enum_label_changed": ("ALTER TYPE \"LabStatus\" RENAME VALUE 'DEFERRED' TO 'PAUSED'",
                           'enum "LabStatus": labels'),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_adoption_refuses_a_different_schema_and_changes_nothing(empty_db, sql_root, case):
    ddl, expected = MISMATCHES[case]
    conn = empty_db.connect()
    build_production(conn, sql_root)
    conn.execute(ddl)
    snap = catalog.snapshot(conn)
    data = row_data(conn)
    with pytest.raises(AdoptionMismatch) as e:
        A.apply(empty_db.dsn(), sql_root=sql_root)
    assert e.value.exit_code == 3
    assert any(d.startswith(expected) for d in e.value.details), e.value.details
    assert len(e.value.details) == 1, e.value.details
    assert catalog.diff(snap, catalog.snapshot(conn), column_order=True) == []
    assert row_data(conn) == data
    assert A.bookkeeping_tables(conn) == {}
    assert conn.execute("SELECT to_regnamespace(%s)", (A.BOOKKEEPING_SCHEMA,)).fetchone()[0] \
        is None
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE "
                        "'\\_harness\\_adopt\\_%'").fetchone()[0] == 0


def test_rollback_of_an_adopted_baseline_is_refused(empty_db, sql_root):
    conn = empty_db.connect()
    build_production(conn, sql_root)
    A.apply(empty_db.dsn(), to="V0002", sql_root=sql_root)
    with pytest.raises(RollbackRefused) as e:
        A.rollback(empty_db.dsn(), steps=2, sql_root=sql_root)
    assert "adopted" in e.value.message and e.value.exit_code == 3
    assert [a["id"] for a in A.status(empty_db.dsn(), sql_root)["applied"]] == \
        ["V0001__baseline", "V0002__roles"]
    # rolling back above the baseline is still allowed
    assert A.rollback(empty_db.dsn(), to="V0001", sql_root=sql_root).rolled_back == \
        ["V0002__roles"]
    assert conn.execute('SELECT count(*) FROM "User"').fetchone()[0] == 1


def test_rolling_back_a_non_adopted_baseline_runs_its_rollback_file(empty_db, sql_root):
    A.apply(empty_db.dsn(), to="V0001", sql_root=sql_root)
    assert A.rollback(empty_db.dsn(), steps=1, sql_root=sql_root).rolled_back == \
        ["V0001__baseline"]
    conn = empty_db.connect()
    assert catalog.is_empty(catalog.snapshot(conn))
