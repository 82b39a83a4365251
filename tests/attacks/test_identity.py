"""Identity attacks: change who or what a row belongs to.

For every table with an owner of record (LabSession, GitHubRepoMapping,
LabAttempt, VerificationJob, VerificationAttempt), every role -- forgea_app,
forgea_worker, forgea_readonly, a role with no grants, the owner and a
superuser under session_replication_role = replica -- tries to re-point a row
at another user, session, lab, repository or start time. Each attempt must be
refused with the documented SQLSTATE and change nothing. The world (seed_world)
has session 1 VERIFIED_PASS (user 1, a PASS attempt from a PASSED job) and
session 2 IN_PROGRESS (user 2, a FAILED job)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.builders import ids
from tests.helpers import raises_sqlstate

ROLES = ("app", "worker", "readonly", "hostile", "owner", "superuser-replica")

# (table, column, new value builder(world) -> value, WHERE clause on session 1,
#  SQLSTATE for the owner / a superuser: the guard that refuses it)
S1 = '"sessionId" = %(s1)s'
CHANGES = [
    ("LabSession", "userId", lambda w: ids.user(3), '"id" = %(s1)s', "FA002"),
    ("LabSession", "labId", lambda w: ids.lab(2), '"id" = %(s1)s', "FA002"),
    ("LabSession", "userForkUrl", lambda w: "https://github.com/attacker/x", '"id" = %(s1)s',
     "FA002"),
    ("LabSession", "startedAt", lambda w: dt.datetime(2020, 1, 1), '"id" = %(s1)s', "FA002"),
    ("LabSession", "id", lambda w: ids.session(99), '"id" = %(s1)s', "FA002"),
    ("LabSession", "userId", lambda w: ids.user(3), '"id" = %(s2)s', "FA002"),   # active
    ("GitHubRepoMapping", "sessionId", lambda w: w["s2"], S1, "FA002"),
    ("GitHubRepoMapping", "repoUrl", lambda w: "https://github.com/attacker/x", S1, "FA002"),
    ("GitHubRepoMapping", "providerRepoId", lambda w: 424242, S1, "FA002"),
    ("LabAttempt", "sessionId", lambda w: w["s2"], S1, "FA001"),
    ("LabAttempt", "authorLogin", lambda w: "attacker", S1, "FA001"),
    ("VerificationJob", "sessionId", lambda w: w["s2"], S1, "FA002"),
    ("VerificationJob", "labAttemptId", lambda w: None, S1, "FA002"),
    ("VerificationAttempt", "sessionId", lambda w: w["s2"], S1, "FA001"),
    ("VerificationAttempt", "verificationJobId", lambda w: None, S1, "FA001"),
]


def _connect(world_db, role):
    if role == "superuser-replica":
        conn = world_db.connect("superuser")
        conn.execute("SET session_replication_role = replica")
        return conn
    return world_db.connect(role)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("table,column,value,where,owner_code", CHANGES,
                         ids=[f"{t}.{c}-{'s1' if 's1' in w else 's2'}"
                              for t, c, _v, w, _o in CHANGES])
def test_no_role_can_change_who_or_what_a_row_belongs_to(world_db, snapshot, role, table,
                                                          column, value, where, owner_code):
    w = world_db.world
    conn = _connect(world_db, role)
    new = value(w)
    if new is None:   # another row's reference of the same kind: the job of session 2
        ref = {"labAttemptId": 'SELECT "labAttemptId" FROM "VerificationJob" '
                               'WHERE "sessionId" = %s',
               "verificationJobId": 'SELECT id FROM "VerificationJob" WHERE "sessionId" = %s'}
        new = world_db.connect("owner").execute(ref[column], (w["s2"],)).fetchone()[0]
    code = owner_code if role in ("owner", "superuser-replica") else "42501"
    with raises_sqlstate(code) as e:
        conn.execute(f'UPDATE "{table}" SET "{column}" = %(new)s WHERE {where}',
                     {"new": new, "s1": w["s1"], "s2": w["s2"]})
    if code == "FA002" and table == "LabSession":
        assert column in str(e.value) and "refused" in str(e.value)


def test_app_cannot_move_a_pass_to_another_user(world_db, snapshot):
    """The reported attack, verbatim: as forgea_app, re-point a VERIFIED_PASS
    session (backed by the victim's PASS attempt) at the attacker."""
    w = world_db.world
    owner = world_db.connect("owner")
    assert owner.execute('SELECT status::text FROM "LabSession" WHERE id = %s',
                         (w["s1"],)).fetchone()[0] == "VERIFIED_PASS"
    app = world_db.connect("app")
    with raises_sqlstate("42501"):
        app.execute('UPDATE "LabSession" SET "userId" = %s, "userForkUrl" = %s, '
                    "\"startedAt\" = '2020-01-01' WHERE id = %s",
                    (ids.user(3), "https://github.com/user3/fork", w["s1"]))


def test_owner_cannot_move_a_pass_to_another_user(world_db, snapshot):
    w = world_db.world
    with raises_sqlstate("FA002") as e:
        world_db.connect("owner").execute(
            'UPDATE "LabSession" SET "userId" = %s WHERE id = %s', (ids.user(3), w["s1"]))
    assert str(w["s1"]) in str(e.value) and "userId" in str(e.value)


@pytest.mark.parametrize("role", ["owner", "superuser-replica"])
@pytest.mark.parametrize("column,value", [("completedAt", "2030-01-01"),
                                          ("startedAt", "2020-01-01"),
                                          ("labVersionId", None)])
def test_a_terminal_session_is_a_closed_record(world_db, snapshot, role, column, value):
    """Apart from the activity columns (lastActivityAt, previewUrl) nothing of a
    VERIFIED_PASS session changes any more, for the owner and a replica-mode
    superuser too (the app has no grant on anything but status and
    lastActivityAt)."""
    conn = _connect(world_db, role)
    with raises_sqlstate("FA002") as e:
        conn.execute(f'UPDATE "LabSession" SET "{column}" = %s WHERE id = %s',
                     (value, world_db.world["s1"]))
    assert column in str(e.value)


@pytest.mark.parametrize("column", ["completedAt", "previewUrl", "labVersionId", "id"])
def test_app_has_no_update_grant_beyond_status_and_last_activity(world_db, snapshot, column):
    app = world_db.connect("app")
    with raises_sqlstate("42501"):
        app.execute(f'UPDATE "LabSession" SET "{column}" = "{column}" WHERE id = %s',
                    (world_db.world["s2"],))


# ------------------------------------------------------------ repository capture

VICTIM_URL = "https://github.com/victim/lab-fork"
VICTIM_REPO_ID = 7_000_001


def capture_setup(db):
    """A victim session bound by URL only (inserted the way the current app does),
    and an attacker session created with the victim repository's id."""
    from tests.builders import add_lab, add_user, create_session, legacy_session
    owner, app = db.connect("owner"), db.connect("app")
    for n in (1, 2):
        add_user(owner, n)
    add_lab(owner, 1)
    victim = legacy_session(app, ids.user(1), ids.lab(1), VICTIM_URL)
    attacker = create_session(app, ids.user(2), ids.lab(1), repo_id=VICTIM_REPO_ID,
                              url="https://github.com/attacker/other", key="attacker-key")
    return victim, attacker


def victim_push(app, delivery="capture-1", n=9301):
    from tests.builders import commit, push
    return push(app, [commit(n)], repo_id=VICTIM_REPO_ID, url=VICTIM_URL, delivery=delivery)


def test_a_repository_id_cannot_capture_another_sessions_pushes(db):
    """The victim's push carries its repository id (bound to the attacker's session
    by create_lab_session) and its URL (bound to the victim's session): refused and
    audited, recorded in neither session, no job."""
    from harness import verify as V
    from tests.helpers import digests
    victim, attacker = capture_setup(db)
    owner, app = db.connect("owner"), db.connect("app")
    assert app.execute("SELECT resolve_lab_session(%s, %s)",
                       (VICTIM_REPO_ID, VICTIM_URL)).fetchone()[0] is None
    tables = ("LabAttempt", "VerificationJob", "GitHubRepoMapping", "GitHubPushDelivery",
              "LabSession", "VerificationAttempt")
    before = digests(owner, tables)
    rows = victim_push(app)
    assert [r[4] for r in rows] == ["rejected"] and rows[0][1] is None and rows[0][3] is None
    assert digests(owner, tables) == before
    meta, user = owner.execute(
        "SELECT metadata, \"userId\" FROM \"AuditLog\" WHERE action = 'PUSH_REJECTED' "
        "AND metadata ->> 'deliveryId' = 'capture-1'").fetchone()
    assert user is None and meta["sqlstate"] == "FL003"
    assert meta["conflictingSessions"] == {"byProviderRepoId": str(attacker),
                                           "byRepoUrl": str(victim)}
    assert str(attacker) in meta["reason"] and str(victim) in meta["reason"]
    rep = V.verify(db.dsn("owner"))
    assert rep.ok, V.render_table(rep)


def test_a_url_bound_session_does_not_learn_an_id_another_session_holds(db):
    """Even a push carrying only the victim's URL leaves the attacker's claim on
    the id alone, and the victim's binding does not take that id."""
    from tests.builders import commit, push
    victim, attacker = capture_setup(db)
    owner, app = db.connect("owner"), db.connect("app")
    rows = push(app, [commit(9311)], repo_id=None, url=VICTIM_URL, delivery="url-only")
    assert [r[4] for r in rows] == ["recorded"]
    assert owner.execute('SELECT "providerRepoId" FROM "GitHubRepoMapping" WHERE '
                         '"sessionId" = %s', (victim,)).fetchone()[0] is None
    assert owner.execute('SELECT count(*) FROM "LabAttempt" WHERE "sessionId" = %s',
                         (attacker,)).fetchone()[0] == 0


def test_a_column_added_later_is_frozen_once_the_session_is_terminal(world_db):
    """The guard's quick path compares a terminal session's whole row but for the
    activity columns, as its full check does: a column the owner adds later is
    frozen on a VERIFIED_PASS session and free on an active one."""
    w = world_db.world
    owner = world_db.connect("owner")
    owner.execute('ALTER TABLE "LabSession" ADD COLUMN "note" text')
    owner.execute('UPDATE "LabSession" SET "note" = \'kept\' WHERE id = %s', (w["s2"],))
    with raises_sqlstate("FA002") as e:
        owner.execute('UPDATE "LabSession" SET "note" = \'forged\' WHERE id = %s', (w["s1"],))
    assert "note" in str(e.value) and "terminal" in str(e.value)
    assert owner.execute('SELECT "note" FROM "LabSession" WHERE id = %s',
                         (w["s1"],)).fetchone()[0] is None
