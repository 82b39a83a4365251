"""LabVersion (V0004, V0005): snapshots of a lab, append-only for everyone."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from tests.builders import (
    LAB_CONSTRAINTS, LAB_REPO_VERSION, add_user_and_labs, create_session, ids, session_row,
)
from tests.helpers import raises_sqlstate, table_digest

VERSIONED_FIELDS = {
    "title": "Lab renamed",
    "epic": "epic-two",
    "failureClass": "DATA_INTEGRITY",
    "sourceGithubIssueUrl": "https://github.com/forgea/labs/issues/999",
    "repoVersion": "v2.0.0",
    "baseRepoUrl": "https://github.com/forgea/lab-renamed",
    "constraints": Jsonb({"k": 2, "new": ["rule"]}),
}
LAB_COLUMNS = ("title", "epic", "failureClass", "sourceGithubIssueUrl", "repoVersion",
               "baseRepoUrl", "constraints")


def _versions(conn, lab):
    return conn.execute(
        'SELECT "versionNumber", "repoVersion", "baseRepoUrl", "snapshot", "id"'
        ' FROM "LabVersion" WHERE "labId" = %s ORDER BY "versionNumber"', (lab,)).fetchall()


def _lab_snapshot(conn, lab):
    row = conn.execute(
        'SELECT "title", "epic", "failureClass"::text, "sourceGithubIssueUrl", "repoVersion",'
        ' "baseRepoUrl", "constraints" FROM "Lab" WHERE "id" = %s', (lab,)).fetchone()
    return dict(zip(LAB_COLUMNS, row))


@pytest.fixture
def owner(db):
    return db.connect("owner")


@pytest.fixture
def app(db):
    return db.connect("app")


def test_new_lab_gets_version_1_immediately(db, app):
    lab = ids.lab(42)
    with app.transaction():
        app.execute(
            'INSERT INTO "Lab" ("id", "title", "epic", "failureClass", "sourceGithubIssueUrl",'
            ' "repoVersion", "baseRepoUrl", "constraints")'
            " VALUES (%s, 'T', 'E', 'RESOURCE_LEAK', 'https://x/1', 'v1', 'https://github.com/f/l',"
            " %s)", (lab, Jsonb({"max": 1})))
        # inside the very transaction that created the lab
        inside = _versions(app, lab)
    assert [v[0] for v in inside] == [1]
    (num, repo_version, base_url, snapshot, _id), = _versions(app, lab)
    assert (num, repo_version, base_url) == (1, "v1", "https://github.com/f/l")
    assert snapshot == _lab_snapshot(app, lab)


@pytest.mark.parametrize("field", sorted(VERSIONED_FIELDS))
def test_updating_a_versioned_field_appends_a_version_with_the_new_snapshot(db, owner, app, field):
    _user, (lab,) = add_user_and_labs(owner, 1)
    (v1,) = _versions(owner, lab)
    app.execute(f'UPDATE "Lab" SET "{field}" = %s WHERE "id" = %s', (VERSIONED_FIELDS[field], lab))
    versions = _versions(owner, lab)
    assert [v[0] for v in versions] == [1, 2]
    assert versions[0] == v1, "version 1 must not change"
    num, repo_version, base_url, snapshot, _ = versions[1]
    current = _lab_snapshot(owner, lab)
    assert snapshot == current
    assert (repo_version, base_url) == (current["repoVersion"], current["baseRepoUrl"])
    assert snapshot != v1[3]


def test_updating_with_identical_values_adds_no_version(db, owner, app):
    _user, (lab,) = add_user_and_labs(owner, 1)
    before = table_digest(owner, "LabVersion")
    app.execute(
        'UPDATE "Lab" SET "title" = "title", "epic" = "epic", "failureClass" = "failureClass",'
        ' "sourceGithubIssueUrl" = "sourceGithubIssueUrl", "repoVersion" = "repoVersion",'
        ' "baseRepoUrl" = "baseRepoUrl", "constraints" = "constraints" WHERE "id" = %s', (lab,))
    app.execute('UPDATE "Lab" SET "constraints" = %s WHERE "id" = %s', (Jsonb(LAB_CONSTRAINTS), lab))
    assert table_digest(owner, "LabVersion") == before


def test_changing_back_to_old_values_appends_another_version(db, owner, app):
    _user, (lab,) = add_user_and_labs(owner, 1)
    app.execute('UPDATE "Lab" SET "repoVersion" = \'v2\' WHERE "id" = %s', (lab,))
    app.execute('UPDATE "Lab" SET "repoVersion" = %s WHERE "id" = %s', (LAB_REPO_VERSION, lab))
    versions = _versions(owner, lab)
    assert [(v[0], v[1]) for v in versions] == [
        (1, LAB_REPO_VERSION), (2, "v2"), (3, LAB_REPO_VERSION)]


def test_existing_sessions_keep_their_version_and_new_sessions_get_the_latest(db, owner, app):
    user, (lab,) = add_user_and_labs(owner, 1)
    user2, _ = add_user_and_labs(owner, 2, labs=0)
    s1 = create_session(app, user, lab, 101)
    (v1,) = [v[4] for v in _versions(owner, lab)]
    app.execute('UPDATE "Lab" SET "repoVersion" = \'v2\' WHERE "id" = %s', (lab,))
    v2 = _versions(owner, lab)[-1][4]
    assert session_row(owner, s1)["labVersionId"] == v1
    s2 = create_session(app, user2, lab, 102)
    assert session_row(owner, s2)["labVersionId"] == v2
    assert session_row(owner, s1)["labVersionId"] == v1


# ------------------------------------------------------------------ append-only

OPERATIONS = {
    "UPDATE": 'UPDATE "LabVersion" SET "repoVersion" = \'tampered\'',
    "UPDATE_SNAPSHOT": 'UPDATE "LabVersion" SET "snapshot" = \'{}\'::jsonb',
    "DELETE": 'DELETE FROM "LabVersion"',
    "TRUNCATE": 'TRUNCATE "LabVersion"',
    "TRUNCATE_CASCADE": 'TRUNCATE "LabVersion" CASCADE',
}


@pytest.fixture
def versioned(db, owner, app):
    """Two labs, one with two versions, and a session on version 1."""
    user, (lab_a, _lab_b) = add_user_and_labs(owner, 1, labs=2)
    create_session(app, user, lab_a, 201)
    app.execute('UPDATE "Lab" SET "repoVersion" = \'v2\' WHERE "id" = %s', (lab_a,))
    return {t: table_digest(owner, t) for t in ("LabVersion", "LabSession", "Lab")}


def _unchanged(db, before):
    owner = db.connect("owner")
    assert {t: table_digest(owner, t) for t in before} == before


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_app_cannot_change_lab_version(db, versioned, op):
    with raises_sqlstate("42501"):
        db.connect("app").execute(OPERATIONS[op])
    _unchanged(db, versioned)


@pytest.mark.parametrize("role", ["worker", "readonly", "hostile"])
@pytest.mark.parametrize("op", ["UPDATE", "DELETE", "TRUNCATE"])
def test_other_roles_cannot_change_lab_version(db, versioned, role, op):
    with raises_sqlstate("42501"):
        db.connect(role).execute(OPERATIONS[op])
    _unchanged(db, versioned)


# A plain TRUNCATE of a table that other tables reference is stopped by
# PostgreSQL's own foreign-key check (0A000) before any BEFORE TRUNCATE trigger
# runs; TRUNCATE ... CASCADE passes that check and must meet the guard (FA001).
GUARDED = sorted(set(OPERATIONS) - {"TRUNCATE"})


@pytest.mark.parametrize("op", GUARDED)
def test_owner_cannot_change_lab_version(db, versioned, op):
    with raises_sqlstate("FA001") as exc:
        db.connect("owner").execute(OPERATIONS[op])
    assert "LabVersion" in str(exc.value)
    _unchanged(db, versioned)


@pytest.mark.parametrize("op", GUARDED)
def test_superuser_in_replica_mode_cannot_change_lab_version(db, versioned, op):
    su = db.connect("superuser")
    su.execute("SET session_replication_role = replica")
    with raises_sqlstate("FA001") as exc:
        su.execute(OPERATIONS[op])
    assert "LabVersion" in str(exc.value)
    _unchanged(db, versioned)


@pytest.mark.parametrize("role", ["owner", "superuser_replica"])
def test_plain_truncate_of_lab_version_is_stopped_by_the_foreign_keys(db, versioned, role):
    conn = db.connect("superuser" if role == "superuser_replica" else "owner")
    if role == "superuser_replica":
        conn.execute("SET session_replication_role = replica")
    with raises_sqlstate("0A000"):
        conn.execute(OPERATIONS["TRUNCATE"])
    _unchanged(db, versioned)


def test_lab_version_guards_fire_always(db, owner):
    rows = owner.execute(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = '\"LabVersion\"'::regclass"
        " AND NOT tgisinternal ORDER BY tgname").fetchall()
    assert rows and all(e == "A" for _n, e in rows), rows
    snap = owner.execute(
        "SELECT tgenabled FROM pg_trigger WHERE tgrelid = '\"Lab\"'::regclass"
        " AND tgname = 'lab_version_snapshot'").fetchone()
    assert snap == ("A",)
