"""Helpers that build labs, sessions, push-ledger attempts and verification jobs.

Everything goes through the public SQL API where one exists:
  * User and Lab rows are inserted as the owner (no API; a Lab insert creates
    its LabVersion 1 through the V0007 trigger);
  * sessions come from ``create_lab_session`` called as forgea_app;
  * LabAttempt rows are inserted by the owner with set-based INSERTs (the
    BEFORE INSERT chain trigger of V0026 fills chainSeq/prevHash/rowHash);
    ``record_push`` is not in the chain yet, so nothing here depends on it;
  * jobs come from ``enqueue_verification_job`` called as forgea_app;
  * workers claim/complete through ``claim_verification_job`` /
    ``complete_verification_job`` as forgea_worker.

Import these helpers, do not copy them.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

from helpers import sha

_seq = itertools.count(1)

JOB_COLUMNS = (
    "id", "labAttemptId", "sessionId", "commitSha", "labVersionId", "status",
    "runCount", "leaseOwner", "leaseExpiresAt", "createdAt", "startedAt",
    "completedAt", "exitCode", "errorMessage",
)


def _n() -> int:
    return next(_seq)


def make_user(owner) -> uuid.UUID:
    n = _n()
    uid = uuid.uuid4()
    owner.execute(
        'INSERT INTO "User" ("id", "email") VALUES (%s, %s)',
        (uid, f"queue-user-{n}-{uid.hex[:8]}@example.test"),
    )
    return uid


def make_users(owner, count: int) -> list[uuid.UUID]:
    uids = [uuid.uuid4() for _ in range(count)]
    owner.execute(
        'INSERT INTO "User" ("id", "email") '
        "SELECT u, 'bulk-' || u::text || '@example.test' FROM unnest(%s::uuid[]) AS u",
        (uids,),
    )
    return uids


def make_lab(owner) -> uuid.UUID:
    lab = uuid.uuid4()
    owner.execute(
        'INSERT INTO "Lab" ("id", "title", "epic", "failureClass", '
        '"sourceGithubIssueUrl", "repoVersion", "baseRepoUrl", "constraints") '
        "VALUES (%s, 'Queue lab', 'queue', 'STATE_CORRUPTION', "
        "'https://github.com/forgea/labs/issues/1', 'v1', "
        "'https://github.com/forgea/queue-lab', '{}'::jsonb)",
        (lab,),
    )
    return lab


def create_session(app, user_id, lab_id, n: int | None = None) -> uuid.UUID:
    """A LabSession (and its GitHubRepoMapping) through create_lab_session, as app."""
    n = n if n is not None else _n()
    tag = uuid.uuid4().hex[:10]
    return app.execute(
        "SELECT create_lab_session(%s, %s, %s, %s, %s)",
        (user_id, lab_id, f"https://github.com/qu{tag}/lab-{n}",
         10_000_000 + int(tag[:6], 16) * 1000 + n % 1000, f"queue-key-{tag}-{n}"),
    ).fetchone()[0]


def create_sessions(db, count: int) -> list[uuid.UUID]:
    """``count`` sessions of one lab, one user each, created as app in one transaction."""
    owner = db.connect("owner")
    lab = make_lab(owner)
    users = make_users(owner, count)
    app = db.connect("app", autocommit=False)
    with app.transaction():
        with app.cursor() as cur:
            sessions = []
            for i, u in enumerate(users):
                tag = uuid.uuid4().hex[:12]
                cur.execute(
                    "SELECT create_lab_session(%s, %s, %s, %s, %s)",
                    (u, lab, f"https://github.com/bulk{tag}/lab",
                     1_000_000 + i, f"bulk-key-{tag}"),
                )
                sessions.append(cur.fetchone()[0])
    app.close()
    return sessions


_ATTEMPT_INSERT = (
    'INSERT INTO "LabAttempt" ("sessionId", "commitSha", "deliveryId", "branch", '
    '"authorName", "authorEmail", "changedFiles", "pushedAt") '
    "SELECT s, c, d, 'main', 'Queue Tester', 'queue@example.test', "
    """'{"added": [], "modified": ["src/app.py"], "removed": []}'::jsonb, """
    "timezone('UTC', now()) "
    "FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS x (s, c, d) "
    'RETURNING "id", "sessionId", "commitSha"'
)


def add_attempts(owner, session_ids, shas=None) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """One LabAttempt per (session, sha) pair, set-based, as owner.

    Returns (attempt id, session id, commit sha) in input order.
    """
    if shas is None:
        shas = [sha(_n() * 7919 + 0xABCDEF) for _ in session_ids]
    deliveries = [f"delivery-{uuid.uuid4()}" for _ in session_ids]
    rows = owner.execute(_ATTEMPT_INSERT, (list(session_ids), list(shas), deliveries)).fetchall()
    by_key = {(r[1], r[2]): r[0] for r in rows}
    return [(by_key[(s, c)], s, c) for s, c in zip(session_ids, shas)]


def add_attempt(owner, session_id, commit_sha: str | None = None) -> uuid.UUID:
    return add_attempts(owner, [session_id], [commit_sha] if commit_sha else None)[0][0]


def enqueue(app, attempt_id) -> uuid.UUID:
    return app.execute("SELECT enqueue_verification_job(%s)", (attempt_id,)).fetchone()[0]


def job(conn, job_id) -> dict:
    """The job row as a dict (column name -> value), or None."""
    cur = conn.execute('SELECT * FROM "VerificationJob" WHERE "id" = %s', (job_id,))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d.name for d in cur.description], row))


def claim(worker, worker_id: str, lease: str = "5 minutes") -> dict | None:
    cur = worker.execute("SELECT * FROM claim_verification_job(%s, %s::interval)",
                         (worker_id, lease))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d.name for d in cur.description], row))


def complete(worker, job_id, worker_id: str, status: str, exit_code: int | None = 0,
             logs: dict | None = None, lease_token=None) -> dict:
    """Without ``lease_token`` the connection must be the one that claimed the job."""
    cur = worker.execute(
        'SELECT * FROM complete_verification_job(%s, %s, %s::"VerificationJobStatus", %s, %s,'
        ' %s)',
        (job_id, worker_id, status, exit_code, Jsonb(logs if logs is not None else {}),
         lease_token),
    )
    row = cur.fetchone()
    return dict(zip([d.name for d in cur.description], row))


@dataclass
class QueueWorld:
    """A lab, one session, its attempts and jobs, with connections per role."""

    db: object
    owner: object
    app: object
    worker: object
    lab: uuid.UUID
    user: uuid.UUID
    session: uuid.UUID
    attempts: list = field(default_factory=list)

    def new_attempt(self, commit_sha: str | None = None) -> uuid.UUID:
        a = add_attempt(self.owner, self.session, commit_sha)
        self.attempts.append(a)
        return a

    def new_job(self, commit_sha: str | None = None) -> uuid.UUID:
        return enqueue(self.app, self.new_attempt(commit_sha))

    def running_job(self, worker_id: str = "worker-a", lease: str = "5 minutes") -> dict:
        """Enqueue a fresh job and claim it (it must be the one claimed)."""
        jid = self.new_job()
        got = claim(self.worker, worker_id, lease)
        assert got is not None and got["id"] == jid, (got, jid)
        return got

    def session_row(self) -> dict:
        cur = self.owner.execute('SELECT * FROM "LabSession" WHERE "id" = %s', (self.session,))
        return dict(zip([d.name for d in cur.description], cur.fetchone()))


def queue_world(db) -> QueueWorld:
    owner = db.connect("owner")
    app = db.connect("app")
    worker = db.connect("worker")
    lab = make_lab(owner)
    user = make_user(owner)
    session = create_session(app, user, lab)
    return QueueWorld(db=db, owner=owner, app=app, worker=worker, lab=lab, user=user,
                      session=session)
