"""Attack suite plumbing: shared attacked database, and the attack summary.

Every test module of this package is one attack category (test_privilege ->
"privilege", ...); a test may also carry ``@pytest.mark.attack("category")``.
A passed test is an attack that was BLOCKED; a failed (or errored) test is an
attack that SUCCEEDED. At the end of the run the table
(category, tried, blocked, succeeded) is printed and written to
``.harness/attack-summary.json`` by ``tests/attack_summary.py`` (a plugin of
the root conftest, so that it also runs in pytest-xdist's controller).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.builders import ids
from tests.helpers import LEDGER_TABLES, digests

REPO = Path(__file__).resolve().parents[2]
EXTRA_TABLES = ("GitHubRepoMapping", "GitHubPushDelivery", "LabSession", "Lab")
WATCHED = LEDGER_TABLES + EXTRA_TABLES
HIJACK_ROLE = "hijack_login"

def pytest_configure(config):
    config.addinivalue_line("markers", "attack(category): attack-suite category of a test")


def _category(item) -> str | None:
    m = item.get_closest_marker("attack")
    if m and m.args:
        return m.args[0]
    path = Path(str(item.fspath))
    if path.parent.name == "attacks" and path.name.startswith("test_"):
        return path.stem[5:].replace("hostile_input", "input")
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        cat = _category(item)
        if cat and not item.get_closest_marker("attack"):
            item.add_marker(pytest.mark.attack(cat))


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def world_db(pg_cluster, tmpl_full):
    """One database per attack module, cloned from tmpl_full and seeded once.

    Attacks must change nothing, so they can share it (each asserts digests).
    """
    from conftest import _fresh_db   # the suite's clone helper
    from tests.builders import seed_world
    with _fresh_db(pg_cluster, tmpl_full, "t_attack") as db:
        world = seed_world(db)
        owner = db.connect("owner")
        # legacy tables get a row each so that row triggers have something to refuse
        owner.execute('INSERT INTO "ResumeBullet" (id, "sessionId", "bulletText") '
                      "VALUES (%s, %s, 'Fixed a leak')", (ids.log(900), world["s1"]))
        # a legacy VerificationLog row, planted as production had it before the pack
        # (the pack freezes the table, so the superuser lifts its user triggers for the
        # insert and puts back exactly the modes they had)
        su = db.connect("superuser")
        with su.transaction():
            modes = su.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = "
                               "'public.\"VerificationLog\"'::regclass AND NOT tgisinternal"
                               ).fetchall()
            su.execute('ALTER TABLE "VerificationLog" DISABLE TRIGGER USER')
            su.execute('INSERT INTO "VerificationLog" (id, "sessionId", "commitSha", "prDiff", '
                       '"ciOutput") VALUES (%s, %s, %s, %s, %s)',
                       (ids.log(901), world["s2"], "c" * 40, "diff", "{}"))
            for name, mode in modes:
                how = {"A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "O": "ENABLE",
                       "D": "DISABLE"}[mode]
                su.execute(sql.SQL('ALTER TABLE "VerificationLog" {} TRIGGER {}').format(
                    sql.SQL(how), sql.Identifier(name)))
        owner.execute('INSERT INTO "Account" (id, "userId", type, provider, "providerAccountId", '
                      "access_token, refresh_token, id_token) VALUES "
                      "('acc-1', %s, 'oauth', 'github', 'gh1', 'gho_secret', 'ghr_secret', "
                      "'idt')", (ids.user(1),))
        owner.execute('INSERT INTO "VerificationToken" (identifier, token, expires) '
                      "VALUES ('user1@example.com', 'vt-secret', now() + interval '1 hour')")
        db.world = world
        yield db


@pytest.fixture(autouse=True)
def _close_connections(request):
    """Module-scoped databases must not accumulate one connection per test."""
    yield
    if "world_db" in request.fixturenames:
        request.getfixturevalue("world_db").close()


@pytest.fixture
def snapshot(world_db):
    """Digests of every watched table before the attack; asserts them after."""
    conn = world_db.connect("owner")
    before = digests(conn, WATCHED)
    yield before
    after = digests(conn, WATCHED)
    assert after == before, "the attack changed data"


@pytest.fixture(scope="session")
def hijack_role(pg_cluster, tmpl_full):
    """A LOGIN role in forgea_app and forgea_worker (the hostile insider)."""
    with pg_cluster.connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                            (HIJACK_ROLE,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(HIJACK_ROLE)))
        conn.execute(sql.SQL("GRANT forgea_app, forgea_worker TO {}").format(
            sql.Identifier(HIJACK_ROLE)))
    return HIJACK_ROLE


def connect_as(db, role: str, **kw) -> psycopg.Connection:
    conn = psycopg.connect(db.cluster.dsn(user=role, dbname=db.name), autocommit=True, **kw)
    db._conns.append(conn)
    return conn
