"""The LabAttempt push ledger, record_push and the per-session hash chain.

Attacks: concurrent duplicate deliveries, concurrent pushes to one session,
redelivery on another branch, tampering by a superuser with the guards off,
direct writes by the app, UPDATE/DELETE/TRUNCATE by the owner, rollbacks with
ledger rows in place.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from harness import apply as A
from harness.errors import RollbackRefused
from tests.chain_ids import version_of
from tests.builders import add_lab, add_user, commit, create_session, push, sha
from tests.helpers import digests, raises_sqlstate

PUSHED_AT = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
TABLES = ("LabAttempt", "AuditLog", "GitHubRepoMapping", "GitHubPushDelivery", "VerificationJob")


class Repo:
    """A session bound to a fresh repository (id + URL), created through the API."""

    _n = 0

    def __init__(self, db):
        Repo._n += 1
        tag = uuid.uuid4().hex[:8]
        owner = db.connect("owner")
        self.user = add_user(owner)
        self.lab = add_lab(owner)
        self.repo_id = 500_000 + int(tag[:5], 16)
        self.url = f"https://github.com/Owner-{tag}/Lab-Repo-{Repo._n}.git"
        self.canonical = f"https://github.com/owner-{tag}/lab-repo-{Repo._n}"
        self.session = create_session(db.connect("app"), self.user, self.lab,
                                      repo_id=self.repo_id, url=self.url, key=f"key-{tag}")


def chain(conn, session):
    return conn.execute(
        'SELECT "chainSeq", "commitSha", "prevHash", "rowHash", "id" FROM "LabAttempt" '
        'WHERE "sessionId" = %s ORDER BY "chainSeq"', (session,),
    ).fetchall()


def problems(conn, session=None):
    return conn.execute(
        "SELECT session_id, chain_seq, lab_attempt_id, problem FROM verify_lab_attempt_chain(%s)",
        (session,),
    ).fetchall()


def audit_count(conn, action):
    return conn.execute('SELECT count(*) FROM "AuditLog" WHERE "action" = %s', (action,)).fetchone()[0]


# ------------------------------------------------------------------ recording


def test_push_records_one_attempt_per_commit_chained(db):
    r = Repo(db)
    app = db.connect("app")
    rows = push(app, [commit(1), commit(2), commit(3)], repo_id=r.repo_id, url=r.url, delivery="d-1", pushed_at=PUSHED_AT)
    assert [x[4] for x in rows] == ["recorded"] * 3
    assert all(x[2] for x in rows)
    # the job id is reported on the head commit's row only
    assert rows[0][3] is None and rows[1][3] is None and rows[2][3] is not None
    owner = db.connect("owner")
    ch = chain(owner, r.session)
    assert [c[0] for c in ch] == [1, 2, 3]
    assert [c[1] for c in ch] == [sha(1), sha(2), sha(3)]
    assert ch[0][2] == b"\x00" * 32
    assert ch[1][2] == ch[0][3] and ch[2][2] == ch[1][3]
    assert problems(owner) == []
    row = owner.execute(
        'SELECT "branch", "deliveryId", "authorName", "authorEmail", "authorLogin", '
        '"changedFiles", "pushedAt" FROM "LabAttempt" WHERE "commitSha" = %s', (sha(1),),
    ).fetchone()
    assert row[:5] == ("main", "d-1", "Ada Tester", "ada@example.test", "ada")
    assert row[5] == {"added": ["src/new_1.py"], "modified": ["README.md"], "removed": []}
    assert row[6] == PUSHED_AT.replace(tzinfo=None)
    assert audit_count(owner, "PUSH_RECORDED") == 1
    user = owner.execute(
        'SELECT "userId", "actorId" FROM "AuditLog" WHERE "action" = \'PUSH_RECORDED\''
    ).fetchone()
    assert user == (r.user, "github-webhook")
    # the first push carrying the repository id keeps it (create_lab_session gave it)
    assert owner.execute(
        'SELECT "providerRepoId" FROM "GitHubRepoMapping" WHERE "sessionId" = %s', (r.session,)
    ).fetchone()[0] == r.repo_id


def test_row_hash_matches_documented_layout(db):
    """Recompute rowHash outside the database from the layout in V0018's header."""
    import hashlib

    r = Repo(db)
    app = db.connect("app")
    c = commit(7, author={"name": "Zoë Ünïcode", "email": None, "username": None},
               added=[], modified=["a,b:c.txt", "dir/é.md"], removed=["x"])
    push(app, [c], repo_id=r.repo_id, url=r.url, delivery="d-layout", pushed_at=PUSHED_AT)
    owner = db.connect("owner")
    row = owner.execute(
        'SELECT "id", "sessionId", "commitSha", "deliveryId", "branch", "authorName", '
        '"authorEmail", "authorLogin", "changedFiles", "pushedAt", "createdAt", '
        '"prevHash", "rowHash" FROM "LabAttempt" WHERE "sessionId" = %s', (r.session,),
    ).fetchone()

    def ns(v):
        if v is None:
            return b"-,"
        b = v.encode("utf-8")
        return str(len(b)).encode() + b":" + b + b","

    def lst(items):
        return ns(str(len(items))) + b"".join(ns(p) for p in items)

    def ts(t):
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    (rid, sid, csha, did, br, an, ae, al, files, pushed, created, prev, rowhash) = row
    payload = (
        ns("forgea.LabAttempt.v1") + ns(prev.hex()) + ns(str(rid)) + ns(str(sid))
        + ns(csha) + ns(did) + ns(br) + ns(an) + ns(ae) + ns(al)
        + lst(files["added"]) + lst(files["modified"]) + lst(files["removed"])
        + ns(ts(pushed)) + ns(ts(created)) + ns("end")
    )
    assert hashlib.sha256(payload).digest() == bytes(rowhash)


def test_same_commit_in_new_delivery_on_another_branch_creates_no_row(db):
    r = Repo(db)
    app = db.connect("app")
    push(app, [commit(1), commit(2)], repo_id=r.repo_id, url=r.url, delivery="d-a", pushed_at=PUSHED_AT)
    rows = push(app, [commit(2)], repo_id=r.repo_id, url=r.url, delivery="d-b", ref="refs/heads/feature/x", pushed_at=PUSHED_AT)
    assert [(x[0], x[2], x[4]) for x in rows] == [(sha(2), False, "existing")]
    # a branch created at a known commit: GitHub sends an empty commits list
    rows = push(app, [], repo_id=r.repo_id, url=r.url, delivery="d-c", ref="refs/heads/other", head=sha(2), pushed_at=PUSHED_AT)
    assert [(x[0], x[2], x[4]) for x in rows] == [(sha(2), False, "existing")]
    owner = db.connect("owner")
    assert owner.execute('SELECT count(*) FROM "LabAttempt"').fetchone()[0] == 2
    # a new commit on top of a known one: only the new one is created
    rows = push(app, [commit(2), commit(3)], repo_id=r.repo_id, url=r.url, delivery="d-d", ref="refs/heads/other", pushed_at=PUSHED_AT)
    assert [(x[2], x[4]) for x in rows] == [(False, "existing"), (True, "recorded")]
    assert [c[0] for c in chain(owner, r.session)] == [1, 2, 3]
    assert problems(owner) == []


def test_redelivery_creates_nothing_and_is_audited(db):
    r = Repo(db)
    app = db.connect("app")
    first = push(app, [commit(1), commit(2)], repo_id=r.repo_id, url=r.url, delivery="d-r", pushed_at=PUSHED_AT)
    owner = db.connect("owner")
    before = digests(owner, ("LabAttempt", "GitHubPushDelivery", "GitHubRepoMapping", "VerificationJob"))
    again = push(app, [commit(1), commit(2)], repo_id=r.repo_id, url=r.url, delivery="d-r", pushed_at=PUSHED_AT)
    assert [(x[0], x[1], x[3]) for x in again] == [(x[0], x[1], x[3]) for x in first]
    assert [(x[2], x[4]) for x in again] == [(False, "duplicate")] * 2
    assert digests(owner, tuple(before)) == before
    assert audit_count(owner, "PUSH_DUPLICATE_DELIVERY") == 1
    # the same delivery id for a different push is refused, nothing written
    audit = digests(owner, ("AuditLog",))
    with raises_sqlstate("22023"):
        push(app, [commit(3)], repo_id=r.repo_id, url=r.url, delivery="d-r", pushed_at=PUSHED_AT)
    assert digests(owner, ("AuditLog", *before)) == {**audit, **before}


def _run_threads(n, fn):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def worker(i):
        try:
            barrier.wait(timeout=60)
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def test_50_concurrent_deliveries_of_one_push(db):
    r = Repo(db)
    commits = [commit(1), commit(2), commit(3)]
    conns = [psycopg.connect(db.dsn("app"), autocommit=True) for _ in range(50)]
    try:
        results = _run_threads(50, lambda i: push(conns[i], commits, repo_id=r.repo_id, url=r.url, delivery="d-storm", pushed_at=PUSHED_AT))
    finally:
        for c in conns:
            c.close()
    outcomes = [tuple(x[4] for x in rows) for rows in results]
    assert outcomes.count(("recorded",) * 3) == 1
    assert outcomes.count(("duplicate",) * 3) == 49
    # every caller sees the same rows and the same job
    assert len({tuple((x[0], x[1], x[3]) for x in rows) for rows in results}) == 1
    owner = db.connect("owner")
    assert owner.execute('SELECT count(*) FROM "LabAttempt"').fetchone()[0] == 3
    assert owner.execute('SELECT count(*) FROM "GitHubPushDelivery"').fetchone()[0] == 1
    jobs = owner.execute(
        'SELECT count(*) FROM "VerificationJob" WHERE "sessionId" = %s', (r.session,)
    ).fetchone()[0]
    assert jobs == 1
    assert audit_count(owner, "PUSH_RECORDED") == 1
    assert audit_count(owner, "PUSH_DUPLICATE_DELIVERY") == 49
    assert problems(owner) == []


def test_concurrent_pushes_of_different_commits_form_one_chain(db):
    r = Repo(db)
    other = Repo(db)
    n = 24
    conns = [psycopg.connect(db.dsn("app"), autocommit=True) for _ in range(n)]
    try:
        def one(i):
            target = r if i % 3 else other
            return push(conns[i], [commit(1000 + i)], repo_id=target.repo_id, url=target.url, delivery=f"d-par-{i}", pushed_at=PUSHED_AT)
        results = _run_threads(n, one)
    finally:
        for c in conns:
            c.close()
    assert all(rows[0][4] == "recorded" for rows in results)
    owner = db.connect("owner")
    for target, count in ((r, n - n // 3), (other, n // 3)):
        ch = chain(owner, target.session)
        assert [c[0] for c in ch] == list(range(1, count + 1))
        assert all(ch[i][2] == ch[i - 1][3] for i in range(1, len(ch)))
    assert problems(owner) == []


# ------------------------------------------------------------------ tamper evidence


@pytest.fixture
def tampered(db):
    """A session with five chained attempts; the superuser's connection with the guards off."""
    r = Repo(db)
    app = db.connect("app")
    push(app, [commit(1), commit(2), commit(3)], repo_id=r.repo_id, url=r.url, delivery="d-t1", pushed_at=PUSHED_AT)
    push(app, [commit(4), commit(5)], repo_id=r.repo_id, url=r.url, delivery="d-t2", pushed_at=PUSHED_AT)
    su = db.connect("superuser")
    assert problems(su) == []
    su.execute('ALTER TABLE "LabAttempt" DISABLE TRIGGER ALL')
    return r, su


def test_replica_mode_does_not_silence_the_guards(db):
    r = Repo(db)
    push(db.connect("app"), [commit(1)], repo_id=r.repo_id, url=r.url, delivery="d-rep", pushed_at=PUSHED_AT)
    su = db.connect("superuser")
    su.execute("SET session_replication_role = replica")
    before = digests(su, ("LabAttempt",))
    with raises_sqlstate("FA001"):
        su.execute('UPDATE "LabAttempt" SET "branch" = \'evil\'')
    with raises_sqlstate("FA001"):
        su.execute('DELETE FROM "LabAttempt"')
    assert digests(su, ("LabAttempt",)) == before


def test_chain_detects_edited_row(tampered, db):
    r, su = tampered
    su.execute('UPDATE "LabAttempt" SET "authorName" = \'Mallory\' WHERE "commitSha" = %s', (sha(3),))
    found = problems(su, r.session)
    assert ("edited", 3) in {(p[3], p[1]) for p in found}


def test_chain_detects_edited_row_with_recomputed_hash(tampered, db):
    r, su = tampered
    su.execute(
        'UPDATE "LabAttempt" AS a SET "branch" = \'evil\' WHERE "commitSha" = %s', (sha(2),))
    su.execute(
        'UPDATE "LabAttempt" AS a SET "rowHash" = lab_attempt_row_hash(a) WHERE "commitSha" = %s',
        (sha(2),))
    found = {(p[3], p[1]) for p in problems(su, r.session)}
    # row 2 now hashes correctly, but row 3 no longer links to it and the audit anchor differs
    assert ("edited", 3) in found and ("edited", 2) in found


def test_chain_detects_deleted_row(tampered, db):
    r, su = tampered
    su.execute('DELETE FROM "LabAttempt" WHERE "commitSha" = %s', (sha(3),))
    found = {(p[3], p[1]) for p in problems(su, r.session)}
    assert ("missing", 4) in found  # the gap after row 2
    assert ("missing", 3) in found  # the PUSH_RECORDED anchor of the deleted row


def test_chain_detects_deleted_newest_row(tampered, db):
    r, su = tampered
    su.execute('DELETE FROM "LabAttempt" WHERE "commitSha" = %s', (sha(5),))
    assert ("missing", 5) in {(p[3], p[1]) for p in problems(su, r.session)}


def test_chain_detects_reordered_rows(tampered, db):
    r, su = tampered
    su.execute('UPDATE "LabAttempt" SET "chainSeq" = 1000 WHERE "commitSha" = %s', (sha(2),))
    su.execute('UPDATE "LabAttempt" SET "chainSeq" = 2 WHERE "commitSha" = %s', (sha(3),))
    su.execute('UPDATE "LabAttempt" SET "chainSeq" = 3 WHERE "commitSha" = %s', (sha(2),))
    found = {(p[3], p[1]) for p in problems(su, r.session)}
    assert ("reordered", 2) in found and ("reordered", 3) in found


# ------------------------------------------------------------------ privileges and guards


@pytest.mark.parametrize("stmt", [
    'INSERT INTO "LabAttempt" ("sessionId", "commitSha", "deliveryId", "branch", "authorName", '
    '"changedFiles", "pushedAt", "chainSeq", "prevHash", "rowHash") SELECT "sessionId", '
    "repeat('e', 40), 'x', 'main', 'n', '{\"added\":[],\"modified\":[],\"removed\":[]}', now(), "
    "1, '\\x', '\\x' FROM \"LabAttempt\" LIMIT 1",
    'UPDATE "LabAttempt" SET "branch" = \'x\'',
    'DELETE FROM "LabAttempt"',
    'TRUNCATE "LabAttempt" CASCADE',
    'INSERT INTO "GitHubRepoMapping" ("sessionId", "repoFullName", "repoUrl") '
    "SELECT \"sessionId\", 'a/b', 'https://github.com/a/b' FROM \"LabAttempt\" LIMIT 1",
    'UPDATE "GitHubRepoMapping" SET "providerRepoId" = 1',
    'DELETE FROM "GitHubRepoMapping"',
    'TRUNCATE "GitHubRepoMapping" CASCADE',
    'DELETE FROM "GitHubPushDelivery"',
])
def test_app_cannot_write_ledger_directly(db, stmt):
    r = Repo(db)
    push(db.connect("app"), [commit(1)], repo_id=r.repo_id, url=r.url, delivery="d-priv", pushed_at=PUSHED_AT)
    owner = db.connect("owner")
    before = digests(owner, TABLES)
    with raises_sqlstate("42501"):
        db.connect("app").execute(stmt)
    assert digests(owner, TABLES) == before


@pytest.mark.parametrize("role", ["app", "worker", "readonly"])
def test_roles_can_read_the_ledger(db, role):
    r = Repo(db)
    push(db.connect("app"), [commit(1)], repo_id=r.repo_id, url=r.url, delivery="d-read", pushed_at=PUSHED_AT)
    conn = db.connect(role)
    assert conn.execute('SELECT count(*) FROM "LabAttempt"').fetchone()[0] == 1
    assert conn.execute('SELECT count(*) FROM "GitHubRepoMapping"').fetchone()[0] == 1


def test_hostile_role_cannot_call_or_read(db):
    r = Repo(db)
    hostile = db.connect("hostile")
    with raises_sqlstate("42501"):
        push(hostile, [commit(1)], repo_id=r.repo_id, url=r.url, delivery="d-h", pushed_at=PUSHED_AT)
    with raises_sqlstate("42501"):
        hostile.execute('SELECT * FROM "LabAttempt"')


@pytest.mark.parametrize("stmt,code", [
    ('UPDATE "LabAttempt" SET "branch" = \'x\'', "FA001"),
    ('UPDATE "LabAttempt" SET "rowHash" = "prevHash"', "FA001"),
    ('DELETE FROM "LabAttempt"', "FA001"),
    ('TRUNCATE "LabAttempt" CASCADE', "FA001"),
    ('UPDATE "GitHubPushDelivery" SET "branch" = \'x\'', "FA001"),
    ('DELETE FROM "GitHubPushDelivery"', "FA001"),
    ('TRUNCATE "GitHubPushDelivery"', "FA001"),
])
def test_owner_cannot_mutate_ledger(db, stmt, code):
    r = Repo(db)
    push(db.connect("app"), [commit(1), commit(2)], repo_id=r.repo_id, url=r.url, delivery="d-own", pushed_at=PUSHED_AT)
    owner = db.connect("owner")
    before = digests(owner, TABLES)
    with raises_sqlstate(code):
        owner.execute(stmt)
    assert digests(owner, TABLES) == before


def test_owner_direct_insert_is_chained_anyway(db):
    r = Repo(db)
    push(db.connect("app"), [commit(1)], repo_id=r.repo_id, url=r.url, delivery="d-own2", pushed_at=PUSHED_AT)
    owner = db.connect("owner")
    owner.execute(
        'INSERT INTO "LabAttempt" ("sessionId", "commitSha", "deliveryId", "branch", '
        '"authorName", "changedFiles", "pushedAt", "chainSeq", "prevHash", "rowHash") '
        "VALUES (%s, %s, 'manual', 'main', 'Owner', "
        "'{\"added\":[],\"modified\":[],\"removed\":[]}', now(), 99, '\\xdead', '\\xbeef')",
        (r.session, sha(2)),
    )
    ch = chain(owner, r.session)
    assert [c[0] for c in ch] == [1, 2] and ch[1][2] == ch[0][3]
    assert problems(owner) == []


# ------------------------------------------------------------------ rollback with data


def _applied(dsn):
    return [m["id"] for m in A.status(dsn)["applied"]]


def test_rollback_refuses_then_preserves_ledger_rows(db, sql_root):
    r = Repo(db)
    first = push(db.connect("app"), [commit(1), commit(2)], repo_id=r.repo_id, url=r.url, delivery="d-rb", pushed_at=PUSHED_AT)
    dsn = db.dsn("owner")
    # everything above the push ledger (the job queue) goes first, preserved
    A.rollback(dsn, to="V0019__push_and_queue_api", preserve=True, sql_root=sql_root)
    owner = db.connect("owner")
    before = digests(owner, ("LabAttempt", "GitHubRepoMapping", "GitHubPushDelivery"))
    with pytest.raises(RollbackRefused) as exc:
        A.rollback(dsn, to="V0016__github_repo_mapping_backfill", sql_root=sql_root)
    assert exc.value.sqlstate == "FM002"
    assert "V0017__push_ledger_and_job_queue_tables" in _applied(dsn)
    assert digests(owner, tuple(before)) == before

    A.rollback(dsn, to="V0016__github_repo_mapping_backfill", preserve=True, sql_root=sql_root)
    assert owner.execute("SELECT to_regclass('public.\"LabAttempt\"')").fetchone()[0] is None
    su = db.connect("superuser")
    archived = su.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'forgea_archive' "
        "AND table_name LIKE 'LabAttempt_V0017%' OR table_name LIKE 'GitHubPushDelivery_V0017%'"
    ).fetchall()
    assert len(archived) == 2
    n = su.execute(f'SELECT count(*) FROM forgea_archive."{[a[0] for a in archived if a[0].startswith("LabAttempt")][0]}"').fetchone()[0]
    assert n == 2

    # the mapping: refused, then archived
    mbefore = digests(owner, ("GitHubRepoMapping",))
    with pytest.raises(RollbackRefused) as exc:
        A.rollback(dsn, to="V0013__lab_session_one_active", sql_root=sql_root)
    assert exc.value.sqlstate == "FM002"
    assert digests(owner, ("GitHubRepoMapping",)) == mbefore
    A.rollback(dsn, to="V0013__lab_session_one_active", preserve=True, sql_root=sql_root)
    assert owner.execute("SELECT to_regclass('public.\"GitHubRepoMapping\"')").fetchone()[0] is None

    # and forward again: the archived binding and ledger rows come back exactly
    # (restored from forgea_archive, not re-derived from the fork URL)
    A.apply(dsn, sql_root=sql_root)
    assert digests(owner, tuple(before)) == before
    assert owner.execute(
        'SELECT "repoUrl", "providerRepoId" FROM "GitHubRepoMapping" WHERE "sessionId" = %s',
        (r.session,)).fetchone() == (r.canonical, r.repo_id)
    rows = push(db.connect("app"), [commit(3)], repo_id=r.repo_id, url=r.url, delivery="d-rb2", pushed_at=PUSHED_AT)
    assert rows[0][4] == "recorded"
    # the restored rows keep their hashes: the chain continues and every
    # PUSH_RECORDED anchor finds its row
    assert problems(owner) == []
    assert [c[0] for c in chain(owner, r.session)] == [1, 2, 3]
    assert {x[1] for x in first} == {row[0] for row in owner.execute(
        'SELECT "id" FROM "LabAttempt" WHERE "sessionId" = %s AND "chainSeq" <= 2',
        (r.session,))}


def test_rollback_of_empty_ledger_restores_previous_schema(db, sql_root):
    from harness import catalog

    dsn = db.dsn("owner")
    below = [m for m in _applied(dsn) if m[:5] < version_of("canonical_url")][-1]
    A.rollback(dsn, to=below, sql_root=sql_root)
    owner = db.connect("owner")
    before = catalog.snapshot(owner)
    for obj in ("LabAttempt", "GitHubRepoMapping", "GitHubPushDelivery"):
        assert owner.execute("SELECT to_regclass(%s)", (f'public."{obj}"',)).fetchone()[0] is None
    for fn in ("record_push", "canonical_repo_url", "create_lab_session", "verify_lab_attempt_chain",
               "lab_status_is_active", "api_bad_input", "enqueue_verification_job"):
        assert owner.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", (fn,)).fetchone()[0] == 0
    A.apply(dsn, to="V0019__push_and_queue_api", sql_root=sql_root)
    A.rollback(dsn, to=below, sql_root=sql_root)
    assert catalog.diff(before, catalog.snapshot(owner), column_order=True) == []
    A.apply(dsn, sql_root=sql_root)
    r = Repo(db)
    assert push(db.connect("app"), [commit(1)], repo_id=r.repo_id, url=r.url, delivery="d-fwd", pushed_at=PUSHED_AT)[0][4] == "recorded"
