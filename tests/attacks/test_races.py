"""Races with barriers: uniqueness and lifecycle rules under real concurrency.
Every rule must hold however the race resolves, and verify passes afterwards."""

from __future__ import annotations

import threading

import psycopg
import pytest

from harness import verify as V
from tests.builders import add_lab, add_user, claim, commit, ids, sha


def race(db, role, calls, *, hold: float = 0.3):
    """Run each (query, params) in its own transaction; all start together at a
    barrier, hold their transaction open a moment, then commit. Returns a list of
    (result | exception)."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)
    conns = [db.connect(role, autocommit=False) for _ in calls]

    def run(i, q, p):
        conn = conns[i]
        try:
            barrier.wait(timeout=10)
            r = conn.execute(q, p).fetchall()
            import time
            time.sleep(hold)
            conn.commit()
            out[i] = r
        except psycopg.Error as e:
            conn.rollback()
            out[i] = e

    ts = [threading.Thread(target=run, args=(i, q, p)) for i, (q, p) in enumerate(calls)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def errors(out):
    return [o.sqlstate for o in out if isinstance(o, Exception)]


def assert_verify(db):
    rep = V.verify(db.dsn("owner"))
    assert rep.ok, V.render_table(rep)


@pytest.fixture
def base(db):
    owner = db.connect("owner")
    for n in range(1, 6):
        add_user(owner, n)
    add_lab(owner, 1)
    add_lab(owner, 2)
    return db


CREATE = "SELECT create_lab_session(%s, %s, %s, %s, %s)"


def test_two_sessions_same_fork_url(base):
    out = race(base, "app", [(CREATE, (ids.user(1), ids.lab(1), "https://github.com/x/fork",
                                       None, "k1")),
                             (CREATE, (ids.user(2), ids.lab(2), "git@github.com:X/fork.git",
                                       None, "k2"))])
    assert sorted(errors(out)) == ["23505"], out
    assert_verify(base)


def test_two_sessions_same_repo_id(base):
    out = race(base, "app", [(CREATE, (ids.user(1), ids.lab(1), "https://github.com/a/one",
                                       77, "k1")),
                             (CREATE, (ids.user(2), ids.lab(1), "https://github.com/b/two",
                                       77, "k2"))])
    assert sorted(errors(out)) == ["23505"], out
    assert_verify(base)


def test_same_user_and_lab_twice(base):
    out = race(base, "app", [(CREATE, (ids.user(3), ids.lab(1), f"https://github.com/u/r{i}",
                                       300 + i, f"k{i}")) for i in range(4)])
    assert sorted(errors(out)) == ["23505"] * 3, out
    assert_verify(base)


def test_same_idempotency_key(base):
    out = race(base, "app", [(CREATE, (ids.user(4), ids.lab(1), "https://github.com/i/dem",
                                       404, "same-key"))] * 4)
    assert not errors(out), out
    assert len({o[0][0] for o in out}) == 1
    owner = base.connect("owner")
    assert owner.execute('SELECT count(*) FROM "GitHubRepoMapping" WHERE "idempotencyKey" '
                         "= 'same-key'").fetchone()[0] == 1
    assert_verify(base)


def test_failed_while_job_completes_passed(base):
    app = base.connect("app")
    s = app.execute(CREATE, (ids.user(5), ids.lab(1), "https://github.com/r/race", 555,
                             "race")).fetchone()[0]
    app.execute("SELECT * FROM record_push('race-1', 555, 'https://github.com/r/race', "
                "'refs/heads/main', %s, now(), %s)",
                (sha(9001), psycopg.types.json.Jsonb([commit(sha(9001))])))
    worker = base.connect("worker")
    claimed = claim(worker, "wr")
    job, token = claimed["id"], claimed["leaseToken"]
    calls_app = ("""UPDATE "LabSession" SET status = 'FAILED' WHERE id = %s RETURNING status""",
                 (s,))
    calls_worker = ("SELECT status::text FROM complete_verification_job(%s, 'wr', 'PASSED', "
                    "0, '{}', %s)", (job, token))
    barrier = threading.Barrier(2)
    out = {}

    def run(role, q, p):
        conn = base.connect(role, autocommit=False)
        try:
            barrier.wait(10)
            out[role] = conn.execute(q, p).fetchall()
            import time
            time.sleep(0.3)
            conn.commit()
        except psycopg.Error as e:
            conn.rollback()
            out[role] = e

    ts = [threading.Thread(target=run, args=("app",) + calls_app),
          threading.Thread(target=run, args=("worker",) + calls_worker)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    owner = base.connect("owner")
    status, completed = owner.execute('SELECT status::text, "completedAt" IS NOT NULL '
                                      'FROM "LabSession" WHERE id = %s', (s,)).fetchone()
    assert completed and status in ("FAILED", "VERIFIED_PASS"), out
    jstatus = owner.execute('SELECT status::text FROM "VerificationJob" WHERE id = %s',
                            (job,)).fetchone()[0]
    if status == "VERIFIED_PASS":
        assert jstatus == "PASSED"
    assert_verify(base)


def test_concurrent_lab_updates_dense_versions(base):
    out = race(base, "app", [('UPDATE "Lab" SET "repoVersion" = %s WHERE id = %s RETURNING id',
                              (f"race-{i}", ids.lab(2))) for i in range(6)], hold=0.1)
    assert not errors(out), out
    owner = base.connect("owner")
    nums = [r[0] for r in owner.execute('SELECT "versionNumber" FROM "LabVersion" '
                                        'WHERE "labId" = %s ORDER BY 1', (ids.lab(2),))]
    assert nums == list(range(1, 8))
    assert_verify(base)


def test_concurrent_pushes_one_session_single_chain(base):
    app = base.connect("app")
    app.execute(CREATE, (ids.user(5), ids.lab(2), "https://github.com/c/chain", 888, "ch"))
    import json
    calls = [("SELECT * FROM record_push(%s, 888, 'https://github.com/c/chain', "
              "'refs/heads/main', %s, now(), %s::jsonb)",
              (f"chain-{i}", sha(9100 + i), json.dumps([commit(sha(9100 + i))])))
             for i in range(5)]
    out = race(base, "app", calls, hold=0.05)
    assert not errors(out), out
    owner = base.connect("owner")
    assert owner.execute("SELECT count(*) FROM verify_lab_attempt_chain(NULL)").fetchone()[0] == 0
    assert_verify(base)


def test_a_stale_run_cannot_complete_a_reclaimed_job(db):
    """Run 1 of a job outlives its lease; the job is requeued and claimed again
    under the SAME worker id (run 2). The late completion of run 1 -- on its own
    connection, or presenting run 1's token -- is refused (FQ002) and changes
    nothing; run 2 completes."""
    import time

    from tests.builders import commit, push, seed_world
    from tests.attacks.conftest import WATCHED
    from tests.helpers import digests, raises_sqlstate
    seed_world(db)
    push(db.connect("app"), [commit(sha(8901))], n=2, delivery="d-stale")
    run1 = db.connect("worker")
    claimed = claim(run1, "same-id", "1 second")
    job, token1 = claimed["id"], claimed["leaseToken"]
    time.sleep(1.2)
    run2 = db.connect("worker")
    assert run2.execute("SELECT requeue_expired_verification_jobs()").fetchone()[0] == 1
    claimed = claim(run2, "same-id", "5 minutes")
    job2, token2 = claimed["id"], claimed["leaseToken"]
    assert job2 == job and token2 != token1
    owner = db.connect("owner")
    before = digests(owner, WATCHED)
    with raises_sqlstate("FQ002") as e:
        run1.execute("SELECT * FROM complete_verification_job(%s, 'same-id', 'PASSED', 0, '{}')",
                     (job,))
    assert "run 2" in str(e.value)
    with raises_sqlstate("FQ002"):
        db.connect("worker").execute(
            "SELECT * FROM complete_verification_job(%s, 'same-id', 'PASSED', 0, '{}', %s)",
            (job, token1))
    assert digests(owner, WATCHED) == before
    assert run2.execute("SELECT status::text, \"runCount\" FROM complete_verification_job("
                        "%s, 'same-id', 'FAILED', 1, '{}', %s)", (job, token2)).fetchone() == (
        "FAILED", 2)
    assert_verify(db)


@pytest.mark.parametrize("role", ["readonly", "worker", "hostile"])
def test_a_reader_cannot_stall_a_sessions_pushes(db, role):
    """A role that can only read takes the advisory keys the pack used to
    serialise on (computable from the session id and the idempotency key) and
    tries every row lock on the session: record_push and create_lab_session of
    that session still finish at once, and the row locks are refused (42501)."""
    import time

    from tests.builders import commit, push, seed_world
    world = seed_world(db)
    s2 = world["s2"]
    reader = db.connect(role, autocommit=False)
    key = int(str(s2).replace("-", "")[:8], 16)
    key = key - 2**32 if key >= 2**31 else key
    reader.execute("SELECT pg_advisory_lock(19521, %s)", (key,))
    reader.execute("SELECT pg_advisory_lock(19522, hashtext('key-late'))")
    for mode in ("UPDATE", "NO KEY UPDATE", "SHARE", "KEY SHARE"):
        with pytest.raises(psycopg.Error) as e:
            reader.execute(f'SELECT 1 FROM "LabSession" WHERE id = %s FOR {mode}', (s2,))
        assert e.value.sqlstate == "42501", (mode, e.value)
        reader.rollback()
        reader.execute("SELECT pg_advisory_lock(19521, %s)", (key,))
    app = db.connect("app")
    app.execute("SET statement_timeout = '5s'")
    t0 = time.monotonic()
    rows = push(app, [commit(sha(9501))], n=2, delivery="d-stall")
    assert [r[4] for r in rows] == ["recorded"]
    app.execute("SELECT create_lab_session(%s, %s, %s, %s, %s)",
                (ids.user(3), ids.lab(2), "https://github.com/late/fork", 9502, "key-late"))
    assert time.monotonic() - t0 < 3, "a reader's lock made the writers wait"
    reader.rollback()
    reader.execute("SELECT pg_advisory_unlock_all()")
    assert_verify(db)
