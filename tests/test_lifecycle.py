"""LabSession lifecycle v2 (V0007, V0010-V0013): transitions, completedAt, versions.

Every refusal asserts its exact SQLSTATE and that the row is unchanged.
States are reached the legal way only: IN_PROGRESS through create_lab_session
(app), STUCK / DEFERRED / FAILED through UPDATEs as the app, VERIFIED_PASS
through the job queue (record_push as app, claim/complete as worker).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import uuid

import psycopg
import pytest

from tests.builders import (
    add_user_and_labs, claim_and_complete, create_session, legacy_session,
    push_head_job, session_row, sha,
)
from tests.helpers import raises_sqlstate

STATUSES = ("IN_PROGRESS", "STUCK", "DEFERRED", "VERIFIED_PASS", "FAILED")
ACTIVE = ("IN_PROGRESS", "STUCK", "DEFERRED")
TERMINAL = ("VERIFIED_PASS", "FAILED")
ALLOWED = {
    "IN_PROGRESS": {"STUCK", "VERIFIED_PASS", "DEFERRED", "FAILED"},
    "STUCK": {"IN_PROGRESS", "VERIFIED_PASS", "DEFERRED", "FAILED"},
    "DEFERRED": {"IN_PROGRESS", "FAILED"},
    "VERIFIED_PASS": set(),
    "FAILED": set(),
}


def _refusal(role: str) -> str:
    """forgea_app has UPDATE on status and lastActivityAt only (V0002): any other
    column is refused by PostgreSQL (42501) before the guards; every other role
    that can write (owner, superuser) meets the guards (FA002)."""
    return "42501" if role == "app" else "FA002"


class Env:
    """Connections per role and a factory of sessions in a given state."""

    def __init__(self, db):
        self.db = db
        self.owner = db.connect("owner")
        self.app = db.connect("app")
        self.worker = db.connect("worker")
        self._n = itertools.count(1)

    def new_user_lab(self, labs: int = 1):
        return add_user_and_labs(self.owner, next(self._n), labs=labs)

    def row(self, sid) -> str:
        return self.owner.execute(
            'SELECT t::text FROM "LabSession" AS t WHERE "id" = %s', (sid,)).fetchone()[0]

    def status(self, sid) -> str:
        return session_row(self.owner, sid)["status"]

    def set_status(self, sid, status, conn=None):
        (conn or self.app).execute(
            'UPDATE "LabSession" SET "status" = %s WHERE "id" = %s', (status, sid))

    def reach(self, target: str, *, pass_attempt: bool = False, fail_attempt: bool = False):
        """A new session (own user and lab) in ``target``, reached legally.

        ``pass_attempt`` / ``fail_attempt``: the session also has a PASS / FAIL
        VerificationAttempt from a completed job while it is still active (the
        job completes while the session is DEFERRED, so the session does not
        move to VERIFIED_PASS by itself).
        """
        user, (lab,) = self.new_user_lab()
        repo_id = 5000 + next(self._n)
        sid = create_session(self.app, user, lab, repo_id)
        assert self.status(sid) == "IN_PROGRESS"
        if target == "VERIFIED_PASS":
            job = push_head_job(self.app, sha(repo_id), n=repo_id)
            claim_and_complete(self.worker, job, "PASSED")
            assert self.status(sid) == "VERIFIED_PASS"
            return sid
        if pass_attempt or fail_attempt:
            job = push_head_job(self.app, sha(repo_id), n=repo_id)
            self.set_status(sid, "DEFERRED")
            claim_and_complete(self.worker, job, "PASSED" if pass_attempt else "FAILED")
            assert self.status(sid) == "DEFERRED"
            self.set_status(sid, "IN_PROGRESS")
        path = {"IN_PROGRESS": [], "STUCK": ["STUCK"], "DEFERRED": ["DEFERRED"],
                "FAILED": ["FAILED"]}[target]
        for step in path:
            self.set_status(sid, step)
        assert self.status(sid) == target
        return sid


@pytest.fixture
def env(db):
    return Env(db)


# ------------------------------------------------------------------ transition table

PAIRS = [(a, b) for a in STATUSES for b in STATUSES]


def _pair_id(p):
    return f"{p[0]}->{p[1]}"


@pytest.mark.parametrize("src,dst", PAIRS, ids=[_pair_id(p) for p in PAIRS])
def test_transition_table_as_app(env, src, dst):
    """Every (from, to) pair: allowed moves succeed, forbidden ones raise FL001 and change nothing."""
    needs_pass = dst == "VERIFIED_PASS" and src in ("IN_PROGRESS", "STUCK")
    sid = env.reach(src, pass_attempt=needs_pass)
    before = env.row(sid)
    before_completed = session_row(env.owner, sid)["completedAt"]

    if src == dst:
        env.set_status(sid, dst)  # same-status update passes and changes nothing
        assert env.row(sid) == before
        return
    if dst in ALLOWED[src]:
        env.set_status(sid, dst)
        row = session_row(env.owner, sid)
        status, completed = row["status"], row["completedAt"]
        assert status == dst
        if dst in TERMINAL:
            assert completed is not None
            now_utc = env.owner.execute("SELECT timezone('UTC', now())").fetchone()[0]
            assert abs(now_utc - completed) < dt.timedelta(minutes=5)
        else:
            assert completed is None
        return
    with raises_sqlstate("FL001") as exc:
        env.set_status(sid, dst)
    assert str(sid) in str(exc.value)
    assert env.row(sid) == before
    assert session_row(env.owner, sid)["completedAt"] == before_completed


@pytest.mark.parametrize("role", ["app", "owner"])
@pytest.mark.parametrize("src", ["IN_PROGRESS", "STUCK"])
def test_verified_pass_without_pass_attempt_is_refused(env, role, src):
    sid = env.reach(src)
    before = env.row(sid)
    with raises_sqlstate("FL002"):
        env.set_status(sid, "VERIFIED_PASS", env.db.connect(role))
    assert env.row(sid) == before


@pytest.mark.parametrize("role", ["app", "owner"])
def test_verified_pass_with_only_a_fail_attempt_is_refused(env, role):
    sid = env.reach("IN_PROGRESS", fail_attempt=True)
    before = env.row(sid)
    with raises_sqlstate("FL002"):
        env.set_status(sid, "VERIFIED_PASS", env.db.connect(role))
    assert env.row(sid) == before


def test_verified_pass_without_pass_attempt_refused_for_superuser_in_replica_mode(env):
    sid = env.reach("IN_PROGRESS")
    before = env.row(sid)
    su = env.db.connect("superuser")
    su.execute("SET session_replication_role = replica")
    with raises_sqlstate("FL002"):
        env.set_status(sid, "VERIFIED_PASS", su)
    assert env.row(sid) == before


def test_pass_attempt_of_another_session_does_not_allow_verified_pass(env):
    env.reach("VERIFIED_PASS")  # a PASS attempt exists, for another session
    sid = env.reach("STUCK")
    before = env.row(sid)
    with raises_sqlstate("FL002"):
        env.set_status(sid, "VERIFIED_PASS")
    assert env.row(sid) == before


# ------------------------------------------------------------------ completedAt


@pytest.mark.parametrize("status", ACTIVE)
def test_completed_at_is_null_while_active(env, status):
    sid = env.reach(status)
    assert session_row(env.owner, sid)["completedAt"] is None


@pytest.mark.parametrize("status", TERMINAL)
def test_completed_at_is_set_on_entering_a_terminal_state(env, status):
    sid = env.reach(status)
    completed = session_row(env.owner, sid)["completedAt"]
    assert completed is not None
    now_utc = env.owner.execute("SELECT timezone('UTC', now())").fetchone()[0]
    assert abs(now_utc - completed) < dt.timedelta(minutes=5)


def test_completed_at_supplied_by_the_owner_is_replaced_by_the_database(env):
    sid = env.reach("STUCK")
    env.owner.execute(
        'UPDATE "LabSession" SET "status" = \'FAILED\', "completedAt" = %s WHERE "id" = %s',
        (dt.datetime(2000, 1, 1), sid))
    completed = session_row(env.owner, sid)["completedAt"]
    assert completed is not None and completed.year != 2000


def test_the_app_cannot_supply_completed_at(env):
    """forgea_app may UPDATE only status and lastActivityAt (V0002): 42501."""
    sid = env.reach("STUCK")
    before = env.row(sid)
    with raises_sqlstate("42501"):
        env.app.execute(
            'UPDATE "LabSession" SET "status" = \'FAILED\', "completedAt" = %s WHERE "id" = %s',
            (dt.datetime(2000, 1, 1), sid))
    assert env.row(sid) == before


@pytest.mark.parametrize("role", ["app", "owner", "superuser_replica"])
@pytest.mark.parametrize("new_value", ["later", "null"])
@pytest.mark.parametrize("status", TERMINAL)
def test_completed_at_never_changes_after_a_terminal_state(env, role, new_value, status):
    sid = env.reach(status)
    before = env.row(sid)
    if role == "superuser_replica":
        conn = env.db.connect("superuser")
        conn.execute("SET session_replication_role = replica")
    else:
        conn = env.db.connect(role)
    expr = '"completedAt" + interval \'1 day\'' if new_value == "later" else "NULL"
    with raises_sqlstate(_refusal(role)):
        conn.execute(f'UPDATE "LabSession" SET "completedAt" = {expr} WHERE "id" = %s', (sid,))
    assert env.row(sid) == before


@pytest.mark.parametrize("role", ["app", "owner"])
@pytest.mark.parametrize("status", ACTIVE)
def test_completed_at_cannot_be_set_while_active(env, role, status):
    sid = env.reach(status)
    before = env.row(sid)
    with raises_sqlstate(_refusal(role)):
        env.db.connect(role).execute(
            'UPDATE "LabSession" SET "completedAt" = timezone(\'UTC\', now()) WHERE "id" = %s',
            (sid,))
    assert env.row(sid) == before


@pytest.mark.parametrize("role", ["app", "owner"])
def test_completed_at_cannot_be_smuggled_in_with_a_move_between_active_states(env, role):
    sid = env.reach("STUCK")
    before = env.row(sid)
    with raises_sqlstate(_refusal(role)):
        env.db.connect(role).execute(
            'UPDATE "LabSession" SET "status" = \'IN_PROGRESS\', "completedAt" = now()'
            ' WHERE "id" = %s', (sid,))
    assert env.row(sid) == before


# ------------------------------------------------------------------ inserts


LEGACY_FORK = "https://github.com/someone/fork"


def _count_sessions(env):
    return env.owner.execute('SELECT count(*) FROM "LabSession"').fetchone()[0]


@pytest.mark.parametrize("role", ["app", "owner"])
@pytest.mark.parametrize("status", ["STUCK", "DEFERRED", "VERIFIED_PASS", "FAILED"])
def test_insert_with_status_other_than_in_progress_is_refused(env, role, status):
    user, (lab,) = env.new_user_lab()
    n = _count_sessions(env)
    with raises_sqlstate("FL001"):
        legacy_session(env.db.connect(role), user, lab, LEGACY_FORK, status=status)
    assert _count_sessions(env) == n


@pytest.mark.parametrize("role", ["app", "owner"])
def test_insert_with_completed_at_is_refused(env, role):
    user, (lab,) = env.new_user_lab()
    n = _count_sessions(env)
    with raises_sqlstate("FL001"):
        legacy_session(env.db.connect(role), user, lab, LEGACY_FORK, completed_at=dt.datetime(2026, 2, 1))
    assert _count_sessions(env) == n


def test_plain_insert_starts_in_progress_without_completed_at(env):
    user, (lab,) = env.new_user_lab()
    sid = legacy_session(env.app, user, lab, LEGACY_FORK)
    row = session_row(env.owner, sid)
    status, completed = row["status"], row["completedAt"]
    assert (status, completed) == ("IN_PROGRESS", None)


# ------------------------------------------------------------------ labVersionId


def _versions(env, lab):
    return [r[0] for r in env.owner.execute(
        'SELECT "id" FROM "LabVersion" WHERE "labId" = %s ORDER BY "versionNumber"', (lab,))]


def test_insert_without_lab_version_gets_the_latest_version_of_its_lab(env):
    user, (lab,) = env.new_user_lab()
    env.app.execute('UPDATE "Lab" SET "repoVersion" = \'v2.0.0\' WHERE "id" = %s', (lab,))
    v1, v2 = _versions(env, lab)
    sid = legacy_session(env.app, user, lab, LEGACY_FORK)  # omits labVersionId, as the Prisma client does
    assert session_row(env.owner, sid)["labVersionId"] == v2


def test_create_lab_session_uses_the_latest_version(env):
    user, (lab,) = env.new_user_lab()
    env.app.execute('UPDATE "Lab" SET "title" = \'renamed\' WHERE "id" = %s', (lab,))
    latest = _versions(env, lab)[-1]
    sid = create_session(env.app, user, lab, 77)
    assert session_row(env.owner, sid)["labVersionId"] == latest


def test_insert_with_an_explicit_older_version_of_the_same_lab_is_kept(env):
    user, (lab,) = env.new_user_lab()
    env.app.execute('UPDATE "Lab" SET "repoVersion" = \'v2.0.0\' WHERE "id" = %s', (lab,))
    v1, _v2 = _versions(env, lab)
    sid = legacy_session(env.app, user, lab, LEGACY_FORK, lab_version=v1)
    assert session_row(env.owner, sid)["labVersionId"] == v1


@pytest.mark.parametrize("role", ["app", "owner"])
def test_insert_with_a_version_of_another_lab_is_refused(env, role):
    user, (lab_a, lab_b) = env.new_user_lab(labs=2)
    (vb,) = _versions(env, lab_b)
    n = _count_sessions(env)
    with raises_sqlstate("FL004") as exc:
        legacy_session(env.db.connect(role), user, lab_a, LEGACY_FORK, lab_version=vb)
    assert str(vb) in str(exc.value)
    assert _count_sessions(env) == n


@pytest.mark.parametrize("role", ["app", "owner"])
def test_insert_with_an_unknown_version_is_refused(env, role):
    user, (lab,) = env.new_user_lab()
    n = _count_sessions(env)
    with raises_sqlstate("FL004"):
        legacy_session(env.db.connect(role), user, lab, LEGACY_FORK, lab_version=uuid.uuid4())
    assert _count_sessions(env) == n


@pytest.mark.parametrize("role", ["app", "owner"])
@pytest.mark.parametrize("change", ["version_same_lab", "version_other_lab", "lab_and_version",
                                    "lab_only"])
def test_lab_and_lab_version_of_a_session_never_change(env, role, change):
    user, (lab_a, lab_b) = env.new_user_lab(labs=2)
    sid = create_session(env.app, user, lab_a, 91)
    env.app.execute('UPDATE "Lab" SET "repoVersion" = \'v9\' WHERE "id" = %s', (lab_a,))
    _va1, va2 = _versions(env, lab_a)
    (vb,) = _versions(env, lab_b)
    before = env.row(sid)
    stmt, params = {
        "version_same_lab": ('UPDATE "LabSession" SET "labVersionId" = %s WHERE "id" = %s',
                             (va2, sid)),
        "version_other_lab": ('UPDATE "LabSession" SET "labVersionId" = %s WHERE "id" = %s',
                              (vb, sid)),
        "lab_and_version": ('UPDATE "LabSession" SET "labId" = %s, "labVersionId" = %s'
                            ' WHERE "id" = %s', (lab_b, vb, sid)),
        "lab_only": ('UPDATE "LabSession" SET "labId" = %s WHERE "id" = %s', (lab_b, sid)),
    }[change]
    with raises_sqlstate(_refusal(role)):
        env.db.connect(role).execute(stmt, params)
    assert env.row(sid) == before


# ------------------------------------------------------------------ one active session


def test_second_active_session_for_same_user_and_lab_is_refused(env):
    user, (lab,) = env.new_user_lab()
    legacy_session(env.app, user, lab, LEGACY_FORK)
    n = _count_sessions(env)
    with raises_sqlstate("23505"):
        legacy_session(env.app, user, lab, LEGACY_FORK)
    assert _count_sessions(env) == n


def test_new_session_allowed_once_the_previous_one_is_terminal(env):
    user, (lab,) = env.new_user_lab()
    first = legacy_session(env.app, user, lab, LEGACY_FORK)
    env.set_status(first, "FAILED")
    second = legacy_session(env.app, user, lab, LEGACY_FORK)
    assert session_row(env.owner, second)["status"] == "IN_PROGRESS"


def test_deferred_session_still_counts_as_active(env):
    user, (lab,) = env.new_user_lab()
    first = legacy_session(env.app, user, lab, LEGACY_FORK)
    env.set_status(first, "DEFERRED")
    with raises_sqlstate("23505"):
        legacy_session(env.app, user, lab, LEGACY_FORK)


def _wait_until_blocked(db, pid, timeout=15.0):
    """Wait until backend ``pid`` waits on a lock (the loser's INSERT behind the winner's)."""
    import time
    with psycopg.connect(db.dsn("superuser"), autocommit=True) as su:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = su.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                             (pid,)).fetchone()
            if row and row[0] == "Lock":
                return True
            time.sleep(0.05)
    return False


@pytest.mark.parametrize("via", ["insert", "create_lab_session"])
def test_concurrent_active_sessions_for_one_user_and_lab_exactly_one_wins(env, via):
    """Two transactions open at once, both insert an active session, then commit: one 23505."""
    user, (lab,) = env.new_user_lab()
    barrier = threading.Barrier(2, timeout=30)
    conns = [psycopg.connect(env.db.dsn("app"), autocommit=False) for _ in (0, 1)]
    pids = [c.info.backend_pid for c in conns]
    results: list = [None, None]
    blocked: list = [None, None]

    def run(i):
        conn = conns[i]
        try:
            conn.execute("SET lock_timeout = '30s'")
            conn.execute("SELECT 1")  # inside an open transaction
            barrier.wait()
            if via == "insert":
                legacy_session(conn, user, lab, LEGACY_FORK)
            else:
                conn.execute("SELECT create_lab_session(%s, %s, %s, %s, %s)",
                             (user, lab, f"https://github.com/racer{i}/fork", 8800 + i,
                              f"race-{i}"))
            # this one got through first: make sure the other one is really
            # inside its INSERT (blocked on us) before committing
            blocked[i] = _wait_until_blocked(env.db, pids[1 - i])
            conn.commit()
            results[i] = "committed"
        except psycopg.Error as e:
            conn.rollback()
            results[i] = e.sqlstate
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(results, key=str) == ["23505", "committed"], results
    winner = results.index("committed")
    assert blocked[winner], "the losing transaction never waited on the winner"
    n = env.owner.execute(
        'SELECT count(*) FROM "LabSession" WHERE "userId" = %s AND "labId" = %s', (user, lab)
    ).fetchone()[0]
    assert n == 1
