"""VerificationAttempt and the frozen VerificationLog: append-only, unforgeable.

Refusals assert the exact SQLSTATE and that nothing changed (digests of every
table involved).
"""

from __future__ import annotations

import uuid

import pytest
from psycopg.types.json import Jsonb

from tests.builders import (
    add_user_and_labs, claim_and_complete, create_session, push_head_job, session_row,
    sha,
)
from tests.helpers import digests, raises_sqlstate

WATCHED = ("VerificationAttempt", "VerificationLog", "LabSession", "VerificationJob",
           "LabAttempt", "LabVersion", "AuditLog")

OPERATIONS = {
    "UPDATE": 'UPDATE {t} SET "commitSha" = \'{sha}\'',
    "DELETE": "DELETE FROM {t}",
    "TRUNCATE": "TRUNCATE {t}",
    "TRUNCATE_CASCADE": "TRUNCATE {t} CASCADE",
}
TABLES = ("VerificationAttempt", "VerificationLog")


def _stmt(table, op):
    return OPERATIONS[op].format(t=f'"{table}"', sha=sha(0xBAD))


def _expected_for_guarded_role(table, op):
    # the production trigger prevent_destructive_action() (verificationlog_immutable)
    # raises P0001 for row operations on VerificationLog; everything else is the
    # pack's append-only guard, FA001
    if table == "VerificationLog" and op in ("UPDATE", "DELETE"):
        return "P0001"
    return "FA001"


@pytest.fixture
def data(db):
    """A passed session (PASS attempt), a failed-run session (FAIL attempt) and a legacy log."""
    owner, app, worker = db.connect("owner"), db.connect("app"), db.connect("worker")
    user, (lab_a, lab_b, lab_c) = add_user_and_labs(owner, 1, labs=3)
    passed = create_session(app, user, lab_a, 301)
    job = push_head_job(app, sha(301), n=301)
    claim_and_complete(worker, job, "PASSED")
    assert session_row(owner, passed)["status"] == "VERIFIED_PASS"

    failing = create_session(app, user, lab_b, 302)
    fjob = push_head_job(app, sha(302), n=302)
    claim_and_complete(worker, fjob, "FAILED")
    assert session_row(owner, failing)["status"] == "IN_PROGRESS"

    # a legacy VerificationLog row, standing in for one written before the
    # migration: the table is frozen (verificationlog_frozen refuses every
    # INSERT), so the fixture lifts the freeze for this one row as the owner.
    legacy_session = create_session(app, user, lab_c, 303)
    owner.execute('ALTER TABLE "VerificationLog" DISABLE TRIGGER verificationlog_frozen')
    owner.execute(
        'INSERT INTO "VerificationLog" ("id", "sessionId", "commitSha", "prDiff", "ciOutput")'
        " VALUES (%s, %s, %s, 'diff', '{\"ok\": true}')",
        (uuid.UUID(int=0xABC), legacy_session, sha(303)))
    owner.execute('ALTER TABLE "VerificationLog" ENABLE ALWAYS TRIGGER verificationlog_frozen')

    counts = owner.execute(
        'SELECT (SELECT count(*) FROM "VerificationAttempt"),'
        ' (SELECT count(*) FROM "VerificationLog")').fetchone()
    assert counts == (2, 1)
    return {
        "passed": passed, "failing": failing, "legacy_session": legacy_session,
        "pass_job": job, "fail_job": fjob, "user": user,
        "before": digests(owner, WATCHED),
    }


def _unchanged(db, data):
    assert digests(db.connect("owner"), WATCHED) == data["before"]


# ------------------------------------------------------------------ UPDATE / DELETE / TRUNCATE


@pytest.mark.parametrize("op", sorted(OPERATIONS))
@pytest.mark.parametrize("table", TABLES)
def test_app_cannot_change_verification_ledgers(db, data, table, op):
    with raises_sqlstate("42501"):
        db.connect("app").execute(_stmt(table, op))
    _unchanged(db, data)


@pytest.mark.parametrize("role", ["worker", "readonly", "hostile"])
@pytest.mark.parametrize("op", ["UPDATE", "DELETE", "TRUNCATE"])
@pytest.mark.parametrize("table", TABLES)
def test_other_roles_cannot_change_verification_ledgers(db, data, table, op, role):
    with raises_sqlstate("42501"):
        db.connect(role).execute(_stmt(table, op))
    _unchanged(db, data)


@pytest.mark.parametrize("op", sorted(OPERATIONS))
@pytest.mark.parametrize("table", TABLES)
def test_owner_cannot_change_verification_ledgers(db, data, table, op):
    with raises_sqlstate(_expected_for_guarded_role(table, op)) as exc:
        db.connect("owner").execute(_stmt(table, op))
    assert table in str(exc.value)
    _unchanged(db, data)


@pytest.mark.parametrize("op", sorted(OPERATIONS))
@pytest.mark.parametrize("table", TABLES)
def test_superuser_in_replica_mode_cannot_change_verification_ledgers(db, data, table, op):
    su = db.connect("superuser")
    su.execute("SET session_replication_role = replica")
    with raises_sqlstate(_expected_for_guarded_role(table, op)) as exc:
        su.execute(_stmt(table, op))
    assert table in str(exc.value)
    _unchanged(db, data)


@pytest.mark.parametrize("column,value", [
    ("result", "FAIL"), ("logs", '{"forged": true}'), ("createdAt", "2020-01-01"),
])
def test_owner_cannot_rewrite_the_result_or_logs_of_an_attempt(db, data, column, value):
    with raises_sqlstate("FA001"):
        db.connect("owner").execute(
            f'UPDATE "VerificationAttempt" SET "{column}" = %s WHERE "sessionId" = %s',
            (value, data["passed"]))
    _unchanged(db, data)


@pytest.mark.parametrize("table", TABLES)
def test_verification_ledger_guards_fire_always(db, table):
    rows = db.connect("owner").execute(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass"
        " AND NOT tgisinternal ORDER BY tgname", (f'"{table}"',)).fetchall()
    assert rows and all(e == "A" for _n, e in rows), rows


# ------------------------------------------------------------------ forging a PASS


def _insert_attempt(conn, *, sid, commit, result="PASS", job=None, attempt_id=None):
    conn.execute(
        'INSERT INTO "VerificationAttempt" ("id", "sessionId", "commitSha", "result", "logs",'
        ' "verificationJobId") VALUES (%s, %s, %s, %s, %s, %s)',
        (attempt_id or uuid.uuid4(), sid, commit, result, Jsonb({"forged": True}), job))


@pytest.mark.parametrize("role", ["app", "worker", "readonly", "hostile"])
def test_roles_cannot_insert_a_pass_attempt(db, data, role):
    with raises_sqlstate("42501"):
        _insert_attempt(db.connect(role), sid=data["failing"], commit=sha(302))
    _unchanged(db, data)


@pytest.mark.parametrize("role", ["owner", "superuser_replica"])
@pytest.mark.parametrize("variant", [
    "no_job", "unknown_job", "job_of_failed_run", "job_of_other_session",
    "log_id_of_other_session", "fail_result_no_job",
])
def test_owner_cannot_insert_an_attempt_directly(db, data, role, variant):
    if role == "owner":
        conn = db.connect("owner")
    else:
        conn = db.connect("superuser")
        conn.execute("SET session_replication_role = replica")
    kwargs = {
        "no_job": dict(sid=data["failing"], commit=sha(302)),
        "unknown_job": dict(sid=data["failing"], commit=sha(302), job=uuid.uuid4()),
        "job_of_failed_run": dict(sid=data["failing"], commit=sha(302), job=data["fail_job"]),
        "job_of_other_session": dict(sid=data["failing"], commit=sha(301), job=data["pass_job"]),
        "log_id_of_other_session": dict(sid=data["failing"], commit=sha(303),
                                        attempt_id=uuid.UUID(int=0xABC)),
        "fail_result_no_job": dict(sid=data["failing"], commit=sha(302), result="FAIL"),
    }[variant]
    with raises_sqlstate("FQ001"):
        _insert_attempt(conn, **kwargs)
    _unchanged(db, data)
    with raises_sqlstate("FL002"):
        conn.execute('UPDATE "LabSession" SET "status" = \'VERIFIED_PASS\' WHERE "id" = %s',
                     (data["failing"],))
    _unchanged(db, data)


def test_owner_cannot_forge_a_pass_through_a_new_verification_log_row(db, data):
    """No one, the owner included, can make a session VERIFIED_PASS by hand.

    The attempt guard accepts an attempt without a job when a VerificationLog
    row with the same id, session and commit exists ("a copy of a legacy row").
    VerificationLog is frozen for the app, but the owner can still INSERT
    into it, so a fresh "legacy" row opens the door to a forged PASS attempt.
    Either step must be refused: the new VerificationLog row (append-only
    legacy table, FA001) or the attempt (FQ001).
    """
    owner = db.connect("owner")
    sid = data["failing"]
    forged = uuid.uuid4()
    try:
        owner.execute(
            'INSERT INTO "VerificationLog" ("id", "sessionId", "commitSha", "prDiff", "ciOutput")'
            " VALUES (%s, %s, %s, 'x', 'forged')", (forged, sid, sha(302)))
    except Exception as e:  # refusing the legacy insert is one acceptable fix
        assert getattr(e, "sqlstate", None) == "FA001", e
    else:
        with raises_sqlstate("FQ001"):
            _insert_attempt(owner, sid=sid, commit=sha(302), attempt_id=forged)
        with raises_sqlstate("FL002"):
            owner.execute('UPDATE "LabSession" SET "status" = \'VERIFIED_PASS\' WHERE "id" = %s',
                          (sid,))
    assert session_row(owner, sid)["status"] == "IN_PROGRESS"
    assert owner.execute(
        'SELECT count(*) FROM "VerificationAttempt" WHERE "sessionId" = %s AND "result" = \'PASS\'',
        (sid,)).fetchone()[0] == 0


def test_app_writing_verification_log_is_told_it_is_frozen(db, data):
    """The app's current client may still try: it gets FA001 and the reason,
    not a bare 'permission denied'."""
    with raises_sqlstate("FA001") as e:
        db.connect("app").execute(
            'INSERT INTO "VerificationLog" ("id", "sessionId", "commitSha", "prDiff", "ciOutput")'
            " VALUES (%s, %s, %s, 'x', 'y')", (uuid.uuid4(), data["failing"], sha(302)))
    assert "VerificationLog is frozen" in str(e.value)
    _unchanged(db, data)


def test_completed_jobs_produced_exactly_their_attempts(db, data):
    owner = db.connect("owner")
    rows = owner.execute(
        'SELECT "sessionId", "result"::text, "verificationJobId", "commitSha", "logs" -> \'job\' ->> \'id\''
        ' FROM "VerificationAttempt" ORDER BY 2 DESC').fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (data["passed"], "PASS", data["pass_job"], sha(301)),
        (data["failing"], "FAIL", data["fail_job"], sha(302)),
    ]
    assert [r[4] for r in rows] == [str(data["pass_job"]), str(data["fail_job"])]
