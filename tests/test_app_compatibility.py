"""The running application keeps working on migrated production.

What the app's current code writes (``../shared/upstream/app/``), replayed as
plain SQL by a LOGIN member of forgea_app on ``prod_db`` (production built by
the real Prisma migrations, with rows, then migrated by the whole chain). The
Node suite in ``tests/app/`` runs the same flows through the real Prisma client.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from psycopg.types.json import Jsonb

from tests.helpers import digests, raises_sqlstate


def _active_session(owner, status):
    row = owner.execute(
        'SELECT "id", "userId", "labId", "lastActivityAt" FROM "LabSession" '
        'WHERE "status" = %s ORDER BY "id" LIMIT 1', (status,)).fetchone()
    assert row, f"prod_db has no {status} session"
    return row


def _webhook_push(app, session_id, now):
    """The webhook route's writes: AuditService.log, then transitionLabSession
    (IN_PROGRESS or STUCK -> IN_PROGRESS, bumping lastActivityAt) in one
    transaction with its own audit row."""
    sid, user_id, lab_id, _ = session_id
    app.execute(
        'INSERT INTO "AuditLog" ("id", "userId", "action", "metadata", "actorId") '
        "VALUES (%s, NULL, 'LAB_VERIFY_ATTEMPT', %s, 'github-webhook')",
        (uuid.uuid4(), Jsonb({"labId": str(lab_id), "commitSha": "a" * 40})))
    with app.transaction():
        current = app.execute('SELECT "status" FROM "LabSession" WHERE "id" = %s',
                              (sid,)).fetchone()[0]
        n = app.execute(
            'UPDATE "LabSession" SET "status" = %s, "lastActivityAt" = %s '
            'WHERE "id" = %s AND "status" = %s',
            ("IN_PROGRESS", now, sid, current)).rowcount
        assert n == 1
        app.execute(
            'INSERT INTO "AuditLog" ("id", "userId", "action", "metadata", "actorId") '
            "VALUES (%s, %s, 'LAB_STATUS_TRANSITION', %s, 'github-webhook')",
            (uuid.uuid4(), user_id, Jsonb({
                "actorType": "SYSTEM", "labSessionId": str(sid), "fromStatus": current,
                "toStatus": "IN_PROGRESS", "statusChanged": current != "IN_PROGRESS",
                "reason": "github_webhook_push"})))


@pytest.mark.parametrize("status", ["IN_PROGRESS", "STUCK"])
def test_webhook_route_writes_commit_as_forgea_app_and_bump_last_activity(prod_db, status):
    owner, app = prod_db.connect("owner"), prod_db.connect("app")
    session = _active_session(owner, status)
    audit_before = owner.execute('SELECT count(*) FROM "AuditLog"').fetchone()[0]
    now = dt.datetime(2026, 12, 1, 12, 0, 0)
    _webhook_push(app, session, now)
    status_after, last = owner.execute(
        'SELECT "status"::text, "lastActivityAt" FROM "LabSession" WHERE "id" = %s',
        (session[0],)).fetchone()
    assert (status_after, last) == ("IN_PROGRESS", now)
    assert owner.execute(
        'SELECT count(*) FROM "AuditLog"').fetchone()[0] == audit_before + 2


PUSH_ACTIONS = ("PUSH_RECORDED", "PUSH_DUPLICATE_DELIVERY", "PUSH_REJECTED")


@pytest.mark.parametrize("actor", ["github-webhook", "user:1", "seed"])
@pytest.mark.parametrize("action", PUSH_ACTIONS)
def test_app_cannot_write_push_ledger_audit_rows_under_any_actor(prod_db, action, actor):
    """The anchors verify_lab_attempt_chain() trusts come only from record_push,
    whatever actorId a forger picks."""
    owner, app = prod_db.connect("owner"), prod_db.connect("app")
    before = digests(owner, ("AuditLog",))
    with raises_sqlstate("42501") as e:
        app.execute(
            'INSERT INTO "AuditLog" ("id", "userId", "action", "metadata", "actorId") '
            "VALUES (gen_random_uuid(), NULL, %s, '{}', %s)", (action, actor))
    assert "written only by record_push()" in str(e.value) and action in str(e.value)
    assert digests(owner, ("AuditLog",)) == before


def test_hand_made_verified_pass_reaches_the_app_as_fl002_with_its_reason(prod_db):
    owner, app = prod_db.connect("owner"), prod_db.connect("app")
    sid = _active_session(owner, "IN_PROGRESS")[0]
    before = digests(owner, ("LabSession",))
    with raises_sqlstate("FL002") as e:
        app.execute("UPDATE \"LabSession\" SET \"status\" = 'VERIFIED_PASS' WHERE \"id\" = %s",
                    (sid,))
    assert "PASS" in str(e.value) and str(sid) in str(e.value)
    assert digests(owner, ("LabSession",)) == before


def test_app_bumps_last_activity_of_a_verified_pass_session_as_its_transitions_allow(prod_db):
    """transitionLabSession allows VERIFIED_PASS -> VERIFIED_PASS with data: the
    activity columns of a terminal session stay writable, nothing else does."""
    owner, app = prod_db.connect("owner"), prod_db.connect("app")
    sid, completed = owner.execute(
        'SELECT "id", "completedAt" FROM "LabSession" WHERE "status" = \'VERIFIED_PASS\' '
        'ORDER BY "id" LIMIT 1').fetchone()
    now = dt.datetime(2026, 12, 1, 12, 30, 0)
    n = app.execute('UPDATE "LabSession" SET "lastActivityAt" = %s WHERE "id" = %s '
                    'AND "status" = \'VERIFIED_PASS\'', (now, sid)).rowcount
    assert n == 1
    assert owner.execute('SELECT "status"::text, "lastActivityAt", "completedAt" FROM '
                         '"LabSession" WHERE "id" = %s', (sid,)).fetchone() == \
        ("VERIFIED_PASS", now, completed)
