"""VerificationJob: the happy paths, outcomes, NOTIFY and rollback round trips."""

from __future__ import annotations

import time
import uuid

import pytest

from harness import apply as A
from harness import chain
from harness.errors import RollbackRefused
from tests.chain_ids import version_of
from tests.builders import claim, commit, complete, enqueue, job_row, push, queue_world, sha
from tests.helpers import digests

CHANNEL = "verification_job_queued"


@pytest.fixture
def world(db):
    return queue_world(db)


def attempts_of(conn, job_id):
    return conn.execute(
        'SELECT "result"::text, "sessionId", "commitSha", "logs" FROM "VerificationAttempt" '
        'WHERE "verificationJobId" = %s', (job_id,)).fetchall()


# ------------------------------------------------------------------ enqueue


def test_enqueue_is_idempotent_and_takes_the_attempts_commit_and_session_version(world):
    attempt = world.new_attempt(sha(0xC0FFEE))
    first = enqueue(world.app, attempt)
    assert enqueue(world.app, attempt) == first
    j = job_row(world.owner, first)
    sess = world.session_row()
    assert j["status"] == "QUEUED" and j["runCount"] == 0
    assert j["labAttemptId"] == attempt and j["sessionId"] == world.session
    assert j["commitSha"] == sha(0xC0FFEE)
    assert j["labVersionId"] == sess["labVersionId"]
    assert j["leaseOwner"] is None and j["leaseExpiresAt"] is None
    assert j["startedAt"] is None and j["completedAt"] is None
    assert world.owner.execute('SELECT count(*) FROM "VerificationJob"').fetchone()[0] == 1


def test_sha256_commits_are_queued(world):
    jid = world.new_job(sha(0xABC, 64))
    assert job_row(world.owner, jid)["commitSha"] == sha(0xABC, 64)


# -------------------------------------------------------------------- claim


def test_claim_sets_lease_run_count_and_started_at(world):
    jid = world.new_job()
    got = claim(world.worker, "worker-1", "10 minutes")
    assert got["id"] == jid and got["status"] == "RUNNING" and got["runCount"] == 1
    assert got["leaseOwner"] == "worker-1" and got["startedAt"] is not None
    span = (got["leaseExpiresAt"] - got["startedAt"]).total_seconds()
    assert 599 <= span <= 601
    assert claim(world.worker, "worker-2") is None  # nothing else eligible


def test_claim_on_an_empty_queue_returns_no_row(world):
    assert claim(world.worker, "idle") is None


def test_a_sessions_jobs_run_one_at_a_time_oldest_first(world):
    jobs = [world.new_job() for _ in range(4)]
    order = []
    for _ in jobs:
        got = claim(world.worker, "w")
        assert got is not None
        # no second job of the session while one runs
        assert claim(world.worker, "w2") is None
        order.append(got["id"])
        complete(world.worker, got["id"], "FAILED", worker_id="w", exit_code=1)
    expected = [r[0] for r in world.owner.execute(
        'SELECT "id" FROM "VerificationJob" ORDER BY "createdAt", "id"')]
    assert order == expected
    assert set(order) == set(jobs)


def test_other_sessions_are_not_blocked_by_a_running_job(world, db):
    from tests.builders import add_user, create_session
    world.new_job()
    world.new_job()
    other = create_session(world.app, add_user(world.owner), world.lab)
    from tests.builders import add_attempt
    other_job = enqueue(world.app, add_attempt(world.owner, other))
    first = claim(world.worker, "w1")
    assert first["sessionId"] == world.session
    second = claim(world.worker, "w2")
    assert second["id"] == other_job


# --------------------------------------------------------------- outcomes


@pytest.mark.parametrize("start", ["IN_PROGRESS", "STUCK"])
def test_passed_completion_moves_an_active_session_to_verified_pass(world, start):
    if start == "STUCK":
        world.app.execute("""UPDATE "LabSession" SET "status" = 'STUCK' WHERE "id" = %s""",
                          (world.session,))
    j = world.running_job(worker_id="w1")
    done = complete(world.worker, j["id"], "PASSED", worker_id="w1", exit_code=0, logs={"stdout": "all green"})
    assert done["status"] == "PASSED" and done["completedAt"] is not None
    assert done["exitCode"] == 0 and done["errorMessage"] is None
    rows = attempts_of(world.owner, j["id"])
    assert len(rows) == 1
    result, session, commit, logs = rows[0]
    assert (result, session, commit) == ("PASS", world.session, j["commitSha"])
    assert logs["stdout"] == "all green" and logs["job"]["id"] == str(j["id"])
    s = world.session_row()
    assert s["status"] == "VERIFIED_PASS" and s["completedAt"] is not None


def test_passed_completion_leaves_a_deferred_session_deferred_with_its_pass(world):
    j = world.running_job(worker_id="w1")
    world.app.execute("""UPDATE "LabSession" SET "status" = 'DEFERRED' WHERE "id" = %s""",
                      (world.session,))
    complete(world.worker, j["id"], "PASSED", worker_id="w1")
    assert world.session_row()["status"] == "DEFERRED"
    assert [r[0] for r in attempts_of(world.owner, j["id"])] == ["PASS"]
    # the PASS attempt lets the app resume and pass it
    world.app.execute("""UPDATE "LabSession" SET "status" = 'IN_PROGRESS' WHERE "id" = %s""",
                      (world.session,))
    world.app.execute("""UPDATE "LabSession" SET "status" = 'VERIFIED_PASS' WHERE "id" = %s""",
                      (world.session,))
    assert world.session_row()["status"] == "VERIFIED_PASS"


def test_failed_completion_appends_a_fail_attempt_and_leaves_the_session_active(world):
    j = world.running_job(worker_id="w1")
    done = complete(world.worker, j["id"], "FAILED", worker_id="w1", exit_code=3, logs={"stderr": "1 test failed"})
    assert done["status"] == "FAILED" and done["exitCode"] == 3
    assert [r[0] for r in attempts_of(world.owner, j["id"])] == ["FAIL"]
    s = world.session_row()
    assert s["status"] == "IN_PROGRESS" and s["completedAt"] is None
    # the session can still be verified by a later commit
    j2 = world.running_job(worker_id="w1")
    complete(world.worker, j2["id"], "PASSED", worker_id="w1")
    assert world.session_row()["status"] == "VERIFIED_PASS"


def test_error_completion_produces_no_attempt_and_no_pass(world):
    j = world.running_job(worker_id="w1")
    before = digests(world.owner, ("VerificationAttempt", "LabSession"))
    done = complete(world.worker, j["id"], "ERROR", worker_id="w1", exit_code=None, logs={"error": "runner crashed"})
    assert done["status"] == "ERROR" and done["completedAt"] is not None
    assert done["errorMessage"] == "runner crashed"
    assert digests(world.owner, ("VerificationAttempt", "LabSession")) == before


def test_completion_is_atomic_with_its_attempt(world, db):
    """A completion rolled back by the worker leaves the job RUNNING and no attempt."""
    j = world.running_job(worker_id="w1")
    tx = db.connect("worker", autocommit=False)
    complete(tx, j["id"], "PASSED", worker_id="w1", lease_token=j["leaseToken"])
    tx.rollback()
    assert job_row(world.owner, j["id"])["status"] == "RUNNING"
    assert attempts_of(world.owner, j["id"]) == []
    assert world.session_row()["status"] == "IN_PROGRESS"


# ---------------------------------------------------------------- requeue


def test_requeue_moves_expired_leases_back_and_leaves_live_ones(world, db):
    from tests.builders import add_attempt, add_user, create_session
    short = world.running_job(worker_id="short", lease="1 second")
    other = create_session(world.app, add_user(world.owner), world.lab)
    enqueue(world.app, add_attempt(world.owner, other))
    long = claim(world.worker, "long", "1 hour")
    time.sleep(1.1)
    assert world.worker.execute("SELECT requeue_expired_verification_jobs()").fetchone()[0] == 1
    s, l_ = job_row(world.owner, short["id"]), job_row(world.owner, long["id"])
    assert s["status"] == "QUEUED" and s["leaseOwner"] is None and s["runCount"] == 1
    assert s["startedAt"] == short["startedAt"]
    assert l_["status"] == "RUNNING" and l_["leaseOwner"] == "long"
    again = claim(world.worker, "next")
    assert again["id"] == short["id"] and again["runCount"] == 2
    assert again["startedAt"] == short["startedAt"]  # first run's start is kept
    assert world.worker.execute("SELECT requeue_expired_verification_jobs()").fetchone()[0] == 0


# ----------------------------------------------------------------- NOTIFY


def test_listener_receives_notify_after_commit_and_not_after_rollback(world, db):
    listener = db.connect("readonly")
    listener.execute(f"LISTEN {CHANNEL}")

    tx = db.connect("app", autocommit=False)
    rolled = world.new_attempt()
    with tx.cursor() as cur:
        cur.execute("SELECT enqueue_verification_job(%s)", (rolled,))
        rolled_job = cur.fetchone()[0]
    assert rolled_job is not None
    # not delivered before commit
    assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
    tx.rollback()
    assert list(listener.notifies(timeout=0.7, stop_after=1)) == []
    assert job_row(world.owner, rolled_job) is None

    committed = world.new_attempt()
    with tx.cursor() as cur:
        cur.execute("SELECT enqueue_verification_job(%s)", (committed,))
        committed_job = cur.fetchone()[0]
    tx.commit()
    got = list(listener.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in got] == [(CHANNEL, str(committed_job))]

    # an idempotent re-enqueue of the same attempt creates nothing and notifies nothing
    assert enqueue(world.app, committed) == committed_job
    assert list(listener.notifies(timeout=0.7, stop_after=1)) == []


# ------------------------------------------------------------- record_push


def test_record_push_enqueues_the_head_commit_in_the_same_transaction(world, db):
    repo_id, repo_url = world.owner.execute(
        'SELECT "providerRepoId", "repoUrl" FROM "GitHubRepoMapping" WHERE "sessionId" = %s',
        (world.session,)).fetchone()
    shas = [sha(0x5101), sha(0x5102), sha(0x5103)]
    args = dict(repo_id=repo_id, url=repo_url, delivery=f"delivery-{uuid.uuid4()}")

    tx = db.connect("app", autocommit=False)
    push(tx, [commit(s) for s in shas], **args)
    tx.rollback()
    assert digests(world.owner, ("LabAttempt", "VerificationJob")) == {
        "LabAttempt": (0, ""), "VerificationJob": (0, "")}

    rows = push(world.app, [commit(s) for s in shas], **args)
    assert [r[0] for r in rows] == shas and all(r[2] for r in rows)
    head = rows[-1]
    assert head[3] is not None and all(r[3] is None for r in rows[:-1])
    j = job_row(world.owner, head[3])
    assert (j["labAttemptId"], j["commitSha"], j["status"]) == (head[1], shas[-1], "QUEUED")
    # redelivery: same job, nothing new
    again = push(world.app, [commit(s) for s in shas], **args)
    assert again[-1][3] == head[3]
    assert world.owner.execute('SELECT count(*) FROM "VerificationJob"').fetchone()[0] == 1


# --------------------------------------------------------------- rollback


def _version_before_queue(sql_root) -> str:
    files = chain.load_chain(sql_root)
    first = int(version_of("verification_job")[1:])
    return [f.id for f in files if f.version < first][-1]


def _queue_ids(sql_root) -> list[str]:
    first = int(version_of("verification_job")[1:])
    return [f.id for f in chain.load_chain(sql_root) if f.version >= first]


def _jobs_in_every_state(world):
    done_pass = world.running_job(worker_id="w")
    complete(world.worker, done_pass["id"], "ERROR", worker_id="w", exit_code=None, logs={"error": "x"})
    world.running_job(worker_id="w")  # RUNNING
    world.new_job()  # QUEUED


def _applied(dsn, sql_root):
    return [a["id"] for a in A.status(dsn, sql_root)["applied"]]


def test_rollback_is_refused_while_jobs_exist(world, db, sql_root):
    _jobs_in_every_state(world)
    before = digests(world.owner)
    with pytest.raises(RollbackRefused) as e:
        A.rollback(db.dsn(), to=_version_before_queue(sql_root), sql_root=sql_root)
    assert e.value.sqlstate == "FM002"
    assert "V0017__push_ledger_and_job_queue_tables" in _applied(db.dsn(), sql_root)
    owner = db.connect("owner")
    assert digests(owner) == before


def test_refused_rollback_leaves_the_queue_guards_and_api_in_place(world, db, sql_root):
    """A rollback refused with FM002 must not leave the queue half torn down.

    The harness rolls back V0019, V0018, V0017 one transaction each; V0017 refuses
    (jobs exist) after V0019 and V0018 were already rolled back: the transition
    guard and claim/complete are gone while the jobs stay.
    """
    _jobs_in_every_state(world)
    with pytest.raises(RollbackRefused):
        A.rollback(db.dsn(), to=_version_before_queue(sql_root), sql_root=sql_root)
    applied = _applied(db.dsn(), sql_root)
    assert all(i in applied for i in _queue_ids(sql_root)), applied
    owner = db.connect("owner")
    assert owner.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'verificationjob_transition_guard'"
    ).fetchone()[0] == 1


def _archive_tables(conn):
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'forgea_archive' AND c.relname LIKE 'VerificationJob\\_V0017\\_%%' "
        "AND c.relkind = 'r'")]


def test_rollback_with_preserve_archives_jobs_and_reapply_works(world, db, sql_root):
    """Queued and running jobs (no attempts yet) survive a round trip: archived, then restored."""
    world.running_job(worker_id="w")
    world.new_job()
    owner = db.connect("owner")
    job_rows = {str(r[0]): r for r in owner.execute('SELECT * FROM "VerificationJob"')}
    target = _version_before_queue(sql_root)
    A.rollback(db.dsn(), to=target, preserve=True, sql_root=sql_root)
    assert _applied(db.dsn(), sql_root)[-1] == target
    assert owner.execute("""SELECT to_regclass('"VerificationJob"')""").fetchone()[0] is None
    tables = _archive_tables(owner)
    assert len(tables) == 1
    archived = owner.execute(
        f'SELECT "row" FROM forgea_archive."{tables[0]}"').fetchall()
    assert sorted(r[0]["id"] for r in archived) == sorted(job_rows)
    assert {r[0]["status"] for r in archived} == {"QUEUED", "RUNNING"}
    # the queue's API went with it (the release chain has no placeholder enqueue)
    assert owner.execute("SELECT to_regprocedure('enqueue_verification_job(uuid)')"
                         ).fetchone()[0] is None

    A.apply(db.dsn(), sql_root=sql_root)
    assert all(i in _applied(db.dsn(), sql_root) for i in _queue_ids(sql_root))
    assert A.status(db.dsn(), sql_root)["pending"] == []
    # the archive is kept (marked restored), the jobs are back exactly
    assert _archive_tables(owner) == tables
    assert {str(r[0]): r for r in owner.execute('SELECT * FROM "VerificationJob"')} == job_rows
    # enqueue of an attempt that has a job returns that job (idempotent)
    jid = enqueue(db.connect("app"), world.attempts[0])
    assert str(jid) in job_rows


def test_rollback_with_preserve_after_completed_jobs_can_be_reapplied(world, db, sql_root):
    """Completed jobs leave attempts whose verificationJobId points at them.

    After a preserving rollback those attempts still carry the archived job ids,
    so re-applying V0017 must still succeed (its FK on
    "VerificationAttempt"."verificationJobId" must not trip over them).
    """
    j = world.running_job(worker_id="w")
    complete(world.worker, j["id"], "FAILED", worker_id="w", exit_code=1)
    world.new_job()
    target = _version_before_queue(sql_root)
    A.rollback(db.dsn(), to=target, preserve=True, sql_root=sql_root)
    owner = db.connect("owner")
    assert len(_archive_tables(owner)) == 1
    A.apply(db.dsn(), sql_root=sql_root)
    assert A.status(db.dsn(), sql_root)["pending"] == []


def test_rollback_and_reapply_of_an_empty_queue_is_a_clean_round_trip(db, sql_root):
    from harness import catalog
    owner = db.connect("owner")
    first = catalog.snapshot(owner)
    A.rollback(db.dsn(), to=_version_before_queue(sql_root), sql_root=sql_root)
    assert owner.execute("""SELECT to_regtype('"VerificationJobStatus"')""").fetchone()[0] is None
    A.apply(db.dsn(), sql_root=sql_root)
    assert catalog.diff(first, catalog.snapshot(owner), column_order=True) == []
