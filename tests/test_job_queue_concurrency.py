"""VerificationJob under concurrency: many workers, dead workers, racing enqueues."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict

import psycopg
import pytest

from tests.helpers import raises_sqlstate
from tests.builders import (
    add_attempts, claim, complete, create_sessions, enqueue, job_row, queue_world,
)

WORKERS = 8
SESSIONS = 250
JOBS_PER_SESSION = 10  # 2500 jobs

TWO_RUNNING = ('SELECT "sessionId" FROM "VerificationJob" WHERE "status" = \'RUNNING\' '
               'GROUP BY 1 HAVING count(*) > 1')


def outcome_for(job_id) -> str:
    b = hashlib.sha256(str(job_id).encode()).digest()[0] % 10
    return "PASSED" if b < 3 else "FAILED" if b < 8 else "ERROR"


def build_queue(db, sessions: int, per_session: int):
    """``sessions`` sessions with ``per_session`` jobs each, enqueued round by round.

    Round k enqueues the k-th attempt of every session in one statement (one
    transaction), so a session's jobs get increasing createdAt values.
    """
    session_ids = create_sessions(db, sessions)
    owner = db.connect("owner")
    rounds = []
    for k in range(per_session):
        shas = [hashlib.sha1(f"{s}:{k}".encode()).hexdigest() for s in session_ids]
        rounds.append([a for a, _s, _c in add_attempts(owner, session_ids, shas)])
    app = db.connect("app")
    for attempt_ids in rounds:
        app.execute("SELECT enqueue_verification_job(a) FROM unnest(%s::uuid[]) AS a",
                    (attempt_ids,))
    return session_ids


def test_eight_workers_drain_thousands_of_jobs_exactly_once_in_session_order(db):
    t0 = time.monotonic()
    build_queue(db, SESSIONS, JOBS_PER_SESSION)
    build_s = time.monotonic() - t0
    owner = db.connect("owner")
    total = owner.execute('SELECT count(*) FROM "VerificationJob"').fetchone()[0]
    assert total == SESSIONS * JOBS_PER_SESSION

    lock = threading.Lock()
    claims: list[tuple[int, object, object, str]] = []  # (seq, job id, session id, worker)
    errors: list[BaseException] = []
    seq = iter(range(10**9))
    stop_monitor = threading.Event()
    violations: list = []
    monitor_samples = [0]

    def worker(n: int):
        wid = f"drain-worker-{n}"
        try:
            conn = psycopg.connect(db.dsn("worker"), autocommit=True)
            idle = 0
            while True:
                got = claim(conn, wid, "5 minutes")
                if got is None:
                    # a session's next job is not eligible while its previous one runs;
                    # stop only once nothing is QUEUED or RUNNING any more
                    left = conn.execute(
                        """SELECT count(*) FROM "VerificationJob"
                           WHERE "status" IN ('QUEUED', 'RUNNING')""").fetchone()[0]
                    if left == 0:
                        break
                    idle += 1
                    time.sleep(0.002)
                    continue
                with lock:
                    claims.append((next(seq), got["id"], got["sessionId"], wid))
                status = outcome_for(got["id"])
                complete(conn, got["id"], status, worker_id=wid, exit_code=0 if status == "PASSED" else 1, logs={"error": "infra"} if status == "ERROR" else {"out": "done"})
            conn.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def monitor():
        conn = psycopg.connect(db.dsn("readonly"), autocommit=True)
        while not stop_monitor.is_set():
            rows = conn.execute(TWO_RUNNING).fetchall()
            monitor_samples[0] += 1
            if rows:
                violations.append(rows)
            time.sleep(0.005)
        conn.close()

    mon = threading.Thread(target=monitor)
    mon.start()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    t1 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    drain_s = time.monotonic() - t1
    stop_monitor.set()
    mon.join()
    assert not any(t.is_alive() for t in threads), "workers did not finish"
    assert not errors, errors[:3]
    assert not violations, violations[:3]
    assert monitor_samples[0] > 10

    # every job claimed exactly once, every claim a distinct job
    claimed = [c[1] for c in claims]
    assert len(claimed) == total and len(set(claimed)) == total
    assert owner.execute(
        """SELECT count(*) FROM "VerificationJob"
           WHERE "status" IN ('QUEUED', 'RUNNING') OR "runCount" <> 1""").fetchone()[0] == 0
    # all 8 workers did work
    assert len({c[3] for c in claims}) == WORKERS

    # per-session order: claims of a session follow (createdAt, id)
    expected = defaultdict(list)
    for sid, jid in owner.execute(
            'SELECT "sessionId", "id" FROM "VerificationJob" ORDER BY "createdAt", "id"'):
        expected[sid].append(jid)
    got_order = defaultdict(list)
    for _seq, jid, sid, _w in sorted(claims):
        got_order[sid].append(jid)
    assert got_order == expected

    # outcomes: PASSED -> exactly one PASS, FAILED -> exactly one FAIL, ERROR -> none
    rows = owner.execute(
        """SELECT j."id", j."status"::text,
                  count(a."id") FILTER (WHERE a."result" = 'PASS'),
                  count(a."id") FILTER (WHERE a."result" = 'FAIL'),
                  bool_and(a."sessionId" = j."sessionId" AND a."commitSha" = j."commitSha")
           FROM "VerificationJob" j LEFT JOIN "VerificationAttempt" a
             ON a."verificationJobId" = j."id"
           GROUP BY j."id", j."status" """).fetchall()
    for jid, status, n_pass, n_fail, same in rows:
        assert status == outcome_for(jid), (jid, status)
        want = {"PASSED": (1, 0), "FAILED": (0, 1), "ERROR": (0, 0)}[status]
        assert (n_pass, n_fail) == want, (jid, status, n_pass, n_fail)
        assert same is not False
    # sessions with a PASS are VERIFIED_PASS with completedAt, the others still active
    bad = owner.execute(
        """SELECT s."id", s."status" FROM "LabSession" s
           WHERE EXISTS (SELECT 1 FROM "VerificationJob" j WHERE j."sessionId" = s."id")
             AND (s."status" = 'VERIFIED_PASS') IS DISTINCT FROM EXISTS (
                   SELECT 1 FROM "VerificationJob" j
                   WHERE j."sessionId" = s."id" AND j."status" = 'PASSED')
              OR (s."status" = 'VERIFIED_PASS') <> (s."completedAt" IS NOT NULL)""").fetchall()
    assert bad == []
    print(f"\nbuild {build_s:.1f}s, drain of {total} jobs by {WORKERS} workers {drain_s:.1f}s")


def test_running_job_uniqueness_is_enforced_by_the_index(db):
    """Even the owner cannot put a second job of a session into RUNNING (23505)."""
    world = queue_world(db)
    j1 = world.running_job(worker_id="w1")
    j2 = world.new_job()
    before = world.owner.execute(TWO_RUNNING).fetchall()
    with raises_sqlstate("23505"):
        world.owner.execute(
            """UPDATE "VerificationJob" SET "status" = 'RUNNING', "runCount" = 1,
               "leaseOwner" = 'rogue', "leaseExpiresAt" = timezone('UTC', now()) + interval '1 hour',
               "startedAt" = timezone('UTC', now()) WHERE "id" = %s""", (j2,))
    assert before == world.owner.execute(TWO_RUNNING).fetchall() == []
    assert job_row(world.owner, j2)["status"] == "QUEUED"
    assert job_row(world.owner, j1["id"])["status"] == "RUNNING"


# ------------------------------------------------------------ dead workers


def _kill(db, conn) -> None:
    su = db.connect("superuser")
    pid = conn.info.backend_pid
    assert su.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
    for _ in range(100):
        if not su.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} still alive")


def test_dead_worker_loses_its_lease_and_another_worker_finishes_the_job(db):
    world = queue_world(db)
    jid = world.new_job()
    doomed = db.connect("worker")
    got = claim(doomed, "doomed", "1 second")
    assert got["id"] == jid
    _kill(db, doomed)
    with pytest.raises(psycopg.OperationalError):
        doomed.execute("SELECT 1")

    rescuer = db.connect("worker")
    # while the lease is live nothing is requeued and the job cannot be claimed again
    assert rescuer.execute("SELECT requeue_expired_verification_jobs()").fetchone()[0] == 0
    assert claim(rescuer, "rescuer") is None
    time.sleep(1.1)
    assert rescuer.execute("SELECT requeue_expired_verification_jobs()").fetchone()[0] == 1
    j = job_row(world.owner, jid)
    assert (j["status"], j["leaseOwner"], j["runCount"]) == ("QUEUED", None, 1)
    again = claim(rescuer, "rescuer", "1 minute")
    assert again["id"] == jid and again["runCount"] == 2

    # the dead worker comes back (new connection) while the rescuer holds the lease
    revenant = db.connect("worker")
    before = world.owner.execute('SELECT * FROM "VerificationJob"').fetchall()
    with raises_sqlstate("FQ002"):
        complete(revenant, jid, "PASSED", worker_id="doomed")
    assert world.owner.execute('SELECT * FROM "VerificationJob"').fetchall() == before

    done = complete(rescuer, jid, "PASSED", worker_id="rescuer")
    assert done["status"] == "PASSED" and done["leaseOwner"] == "rescuer"
    assert world.session_row()["status"] == "VERIFIED_PASS"
    # ... and after the job is terminal
    before = world.owner.execute('SELECT * FROM "VerificationJob"').fetchall()
    with raises_sqlstate("FQ001"):
        complete(revenant, jid, "FAILED", worker_id="doomed", exit_code=1)
    assert world.owner.execute('SELECT * FROM "VerificationJob"').fetchall() == before
    n = world.owner.execute('SELECT count(*) FROM "VerificationAttempt" WHERE '
                            '"verificationJobId" = %s', (jid,)).fetchone()[0]
    assert n == 1


def test_job_ends_in_error_after_the_third_expired_run(db):
    world = queue_world(db)
    jid = world.new_job()
    for run in (1, 2, 3):
        conn = db.connect("worker")
        got = claim(conn, f"doomed-{run}", "1 second")
        assert got["id"] == jid and got["runCount"] == run
        _kill(db, conn)
        time.sleep(1.1)
        assert world.worker.execute(
            "SELECT requeue_expired_verification_jobs()").fetchone()[0] == 1
        j = job_row(world.owner, jid)
        if run < 3:
            assert j["status"] == "QUEUED" and j["completedAt"] is None
    j = job_row(world.owner, jid)
    assert j["status"] == "ERROR" and j["runCount"] == 3
    assert j["completedAt"] is not None
    assert j["errorMessage"] and "3" in j["errorMessage"]
    assert claim(world.worker, "late") is None
    assert world.owner.execute('SELECT count(*) FROM "VerificationAttempt" WHERE '
                               '"verificationJobId" = %s', (jid,)).fetchone()[0] == 0
    before = world.owner.execute('SELECT * FROM "VerificationJob"').fetchall()
    with raises_sqlstate("FQ001"):
        complete(world.worker, jid, "PASSED", worker_id="doomed-3")
    assert world.owner.execute('SELECT * FROM "VerificationJob"').fetchall() == before
    assert world.session_row()["status"] == "IN_PROGRESS"


def test_worker_killed_before_its_claim_commits_leaves_the_job_queued(db):
    world = queue_world(db)
    jid = world.new_job()
    tx = db.connect("worker", autocommit=False)
    assert claim(tx, "half", "1 minute")["id"] == jid
    # while the claim is uncommitted other workers skip the locked row, never block
    other = db.connect("worker")
    other.execute("SET statement_timeout = '2s'")
    assert claim(other, "other") is None
    _kill(db, tx)
    j = job_row(world.owner, jid)
    assert (j["status"], j["runCount"], j["leaseOwner"]) == ("QUEUED", 0, None)
    assert claim(other, "other")["id"] == jid


# ----------------------------------------------------------- racing enqueue


def test_concurrent_enqueues_of_one_attempt_create_one_job(db):
    world = queue_world(db)
    attempt = world.new_attempt()
    n = 20
    conns = [psycopg.connect(db.dsn("app"), autocommit=True) for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def go(i):
        try:
            barrier.wait(timeout=10)
            results[i] = enqueue(conns[i], attempt)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    listener = db.connect("readonly")
    listener.execute("LISTEN verification_job_queued")
    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for c in conns:
        c.close()
    assert not errors, errors[:3]
    assert len(set(results)) == 1 and results[0] is not None
    assert world.owner.execute('SELECT array_agg("id") FROM "VerificationJob"').fetchone()[0] \
        == [results[0]]
    notes = list(listener.notifies(timeout=1, stop_after=5))
    assert [x.payload for x in notes] == [str(results[0])]
