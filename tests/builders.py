"""The suite's data builders, in one place, one signature each (fixtures stay in conftest.py).

Rows are made the way the application and the workers make them, through the
pack's SQL API as the right role, wherever an API exists:

  ids, sha                  deterministic uuids (``ids.user(1)``) and commit SHAs (``sha(7)``)
  add_user / add_users      "User" rows, as the owner (no API)
  add_lab                   a "Lab" row, as the owner; the V0005 trigger makes its LabVersion 1
  add_user_and_labs         user n and its labs 100*n+k
  new_lab_version           change a lab's repoVersion (a new LabVersion), as any writer
  create_session            create_lab_session(...) as forgea_app: a session bound to a repository
  create_sessions           many sessions of one lab in one transaction
  legacy_session            a LabSession inserted directly (bound by URL only, as the old app does)
  resolve_session           resolve_lab_session(repo id, url): the repository binding
  session_row               the LabSession row as a dict
  commit                    one commit of a GitHub push payload
  push                      record_push(...) as forgea_app; returns its rows
  push_head_job             record_push of one commit; returns the head commit's job id
  add_attempts/add_attempt  LabAttempt rows inserted by the owner (the chain trigger hashes them)
  enqueue                   enqueue_verification_job(...) as forgea_app
  claim                     claim_verification_job(...) as forgea_worker; the row as a dict
  complete                  complete_verification_job(...) as the lease holder; the row as a dict
  claim_and_complete        claim a given job and complete it
  job_row                   the VerificationJob row as a dict
  queue_world               a lab, a user and one session with connections per role
  seed_world                users 1-3, labs 1-2, sessions 1-2, three pushes, one PASSED
                            and one FAILED job, and a second version of lab 1

Numbered builders (``add_user(owner, 3)``, ``create_session(app, u, l, 3)``) are
deterministic and derive every value from ``n``; without ``n`` they make a fresh
row with values no other builder call in this process uses.

Import these, never copy them.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from psycopg.types.json import Jsonb

#: pushedAt of every push unless a test passes its own
NOW = datetime(2026, 2, 10, 10, 0, tzinfo=timezone.utc)
#: what add_lab writes (a test that changes a lab compares with these)
LAB_REPO_VERSION = "v1"
LAB_CONSTRAINTS = {"maxMinutes": 60}
#: the author of every commit() unless a test passes its own (``author={**AUTHOR, ...}``)
AUTHOR = {"name": "Ada Tester", "email": "ada@example.test", "username": "ada"}

# numbers of the unnumbered builders: far above any n a test passes explicitly
_fresh = itertools.count(1_000_001)


def _next_n() -> int:
    return next(_fresh)


_DEFAULT = object()  # "not given", where None means SQL NULL


class _Ids:
    """Deterministic, readable uuids: ids.user(1) -> 00000001-0000-4000-8000-000000000001."""

    def _make(self, prefix: int, n: int) -> uuid.UUID:
        return uuid.UUID(f"{prefix:08x}-0000-4000-8000-{n:012x}")

    def user(self, n: int) -> uuid.UUID:
        return self._make(1, n)

    def lab(self, n: int) -> uuid.UUID:
        return self._make(2, n)

    def session(self, n: int) -> uuid.UUID:
        return self._make(3, n)

    def log(self, n: int) -> uuid.UUID:
        return self._make(4, n)

    def audit(self, n: int) -> uuid.UUID:
        return self._make(5, n)


ids = _Ids()


def sha(n: int, length: int = 40) -> str:
    """A valid lowercase hex commit SHA derived from ``n``."""
    return format(n, "x").rjust(length, "0")[-length:]


def _row(cur) -> dict | None:
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d.name for d in cur.description], row))


# ------------------------------------------------------------------ users and labs


def add_user(owner, n: int | None = None) -> uuid.UUID:
    """User ``n`` (ids.user(n), user{n}@example.com, githubId gh{n}; a second call
    with the same ``n`` changes nothing), or without ``n`` a fresh user."""
    if n is None:
        uid = uuid.uuid4()
        owner.execute('INSERT INTO "User" ("id", "email") VALUES (%s, %s)',
                      (uid, f"user-{uid}@example.test"))
        return uid
    owner.execute('INSERT INTO "User" ("id", "email", "githubId") VALUES (%s, %s, %s) '
                  "ON CONFLICT DO NOTHING", (ids.user(n), f"user{n}@example.com", f"gh{n}"))
    return ids.user(n)


def add_users(owner, count: int) -> list[uuid.UUID]:
    """``count`` fresh users in one statement."""
    uids = [uuid.uuid4() for _ in range(count)]
    owner.execute(
        'INSERT INTO "User" ("id", "email") '
        "SELECT u, 'bulk-' || u::text || '@example.test' FROM unnest(%s::uuid[]) AS u",
        (uids,),
    )
    return uids


def add_lab(owner, n: int | None = None) -> uuid.UUID:
    """Lab ``n`` (ids.lab(n); a second call with the same ``n`` changes nothing), or
    without ``n`` a fresh lab; repoVersion LAB_REPO_VERSION, constraints LAB_CONSTRAINTS.
    The V0005 trigger gives it LabVersion 1."""
    lab = uuid.uuid4() if n is None else ids.lab(n)
    tag = str(n) if n is not None else lab.hex[:12]
    owner.execute(
        'INSERT INTO "Lab" ("id", "title", "epic", "failureClass", "sourceGithubIssueUrl", '
        '"repoVersion", "baseRepoUrl", "constraints") '
        "VALUES (%s, %s, 'Epic', 'RESOURCE_LEAK', %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (lab, f"Lab {tag}", f"https://github.com/forgea/labs/issues/{tag}", LAB_REPO_VERSION,
         f"https://github.com/forgea/lab-{tag}", Jsonb(LAB_CONSTRAINTS)),
    )
    return lab


def add_user_and_labs(owner, n: int, labs: int = 1) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """add_user(owner, n) and labs 100*n+1 .. 100*n+labs; returns (user, [labs])."""
    return add_user(owner, n), [add_lab(owner, 100 * n + k) for k in range(1, labs + 1)]


def new_lab_version(conn, lab, repo_version: str) -> None:
    """Set the lab's repoVersion (a new value makes a new LabVersion)."""
    conn.execute('UPDATE "Lab" SET "repoVersion" = %s WHERE "id" = %s', (repo_version, lab))


# ------------------------------------------------------------------ sessions


def fork_url(n: int) -> str:
    """The repository URL of session ``n``."""
    return f"https://github.com/dev{n}/lab-{n}"


def repo_id_of(n: int) -> int:
    """The repository id of session ``n``."""
    return 1000 + n


def create_session(app, user, lab, n: int | None = None, *, repo_id=_DEFAULT,
                   url: str | None = None, key: str | None = None) -> uuid.UUID:
    """create_lab_session as ``app``: session ``n`` (fresh without it) bound to
    repository repo_id_of(n) at fork_url(n) with idempotency key key-{n}; each can be
    given instead (``repo_id=None`` passes NULL: a URL-bound session)."""
    n = _next_n() if n is None else n
    return app.execute(
        "SELECT create_lab_session(%s, %s, %s, %s, %s)",
        (user, lab, url if url is not None else fork_url(n),
         repo_id_of(n) if repo_id is _DEFAULT else repo_id,
         key if key is not None else f"key-{n}"),
    ).fetchone()[0]


def create_sessions(db, count: int) -> list[uuid.UUID]:
    """``count`` sessions of one fresh lab, one fresh user each, created as app in
    one transaction."""
    owner = db.connect("owner")
    lab = add_lab(owner)
    users = add_users(owner, count)
    app = db.connect("app", autocommit=False)
    with app.transaction():
        sessions = [create_session(app, u, lab) for u in users]
    app.close()
    return sessions


def legacy_session(conn, user, lab, url: str, *, sid=None, status: str | None = None,
                   completed_at=None, lab_version=None) -> uuid.UUID:
    """A LabSession inserted directly, bound by URL only (no repository id), as the
    app did before create_lab_session; optional status, completedAt, labVersionId."""
    sid = sid if sid is not None else uuid.uuid4()
    cols = ['"id"', '"userId"', '"labId"', '"userForkUrl"']
    vals = [sid, user, lab, url]
    for col, val in (('"status"', status), ('"completedAt"', completed_at),
                     ('"labVersionId"', lab_version)):
        if val is not None:
            cols.append(col)
            vals.append(val)
    conn.execute(f'INSERT INTO "LabSession" ({", ".join(cols)}) '
                 f"VALUES ({', '.join(['%s'] * len(vals))})", vals)
    return sid


def resolve_session(conn, repo_id, url):
    """resolve_lab_session(repo id, url): the session the repository is bound to."""
    return conn.execute("SELECT resolve_lab_session(%s, %s)", (repo_id, url)).fetchone()[0]


def session_row(conn, sid) -> dict | None:
    """The LabSession row as a dict (column -> value; enums as text)."""
    return _row(conn.execute('SELECT * FROM "LabSession" WHERE "id" = %s', (sid,)))


# ------------------------------------------------------------------ pushes


def commit(c: int | str, **fields) -> dict:
    """One commit of a GitHub push payload: id sha(c) (or ``c`` itself when a string),
    author Ada Tester, added src/new_{c}.py, modified README.md; ``fields`` replace keys."""
    commit_sha = sha(c) if isinstance(c, int) else c
    label = c if isinstance(c, int) else str(commit_sha)[:7]
    out = {
        "id": commit_sha,
        "message": f"commit {label}",
        "timestamp": "2026-02-10T10:00:00Z",
        "author": dict(AUTHOR),
        "added": [f"src/new_{label}.py"],
        "modified": ["README.md"],
        "removed": [],
    }
    out.update(fields)
    return out


def push(app, commits, *, n: int | None = None, repo_id=_DEFAULT, url=_DEFAULT,
         delivery=_DEFAULT, ref="refs/heads/main", head=_DEFAULT, pushed_at=NOW) -> list[tuple]:
    """record_push as ``app`` of ``commits`` (a list of commit() dicts, passed as
    given; None passes NULL) to session ``n``'s repository (repo_id_of(n) at
    fork_url(n)) unless ``repo_id`` / ``url`` are given; head: the last commit's id;
    delivery: delivery-{head}. Any argument given as None passes SQL NULL.
    Returns its rows (commit_sha, lab_attempt_id, created, verification_job_id, outcome)."""
    if head is _DEFAULT:
        head = commits[-1]["id"]
    return app.execute(
        "SELECT commit_sha, lab_attempt_id, created, verification_job_id, outcome "
        "FROM record_push(%s, %s, %s, %s, %s, %s, %s)",
        (f"delivery-{head}" if delivery is _DEFAULT else delivery,
         repo_id_of(n) if repo_id is _DEFAULT else repo_id,
         fork_url(n) if url is _DEFAULT else url, ref, head, pushed_at,
         None if commits is None else Jsonb(commits)),
    ).fetchall()


def push_head_job(app, head_sha: str, **push_args) -> uuid.UUID:
    """push() of one commit that must be recorded (or already there) with a job;
    returns the job id."""
    rows = push(app, [commit(head_sha)], **push_args)
    head = [r for r in rows if r[0] == head_sha]
    assert head and head[0][4] in ("recorded", "existing"), rows
    assert head[0][3] is not None, f"record_push enqueued no job: {rows}"
    return head[0][3]


# ------------------------------------------------------------------ attempts and jobs

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
    """One LabAttempt per (session, sha) pair, set-based, as owner (the chain trigger
    fills chainSeq/prevHash/rowHash). Returns (attempt id, session id, sha) in order."""
    if shas is None:
        shas = [sha(_next_n() * 7919 + 0xABCDEF) for _ in session_ids]
    deliveries = [f"delivery-{uuid.uuid4()}" for _ in session_ids]
    rows = owner.execute(_ATTEMPT_INSERT, (list(session_ids), list(shas), deliveries)).fetchall()
    by_key = {(r[1], r[2]): r[0] for r in rows}
    return [(by_key[(s, c)], s, c) for s, c in zip(session_ids, shas)]


def add_attempt(owner, session_id, commit_sha: str | None = None) -> uuid.UUID:
    return add_attempts(owner, [session_id], [commit_sha] if commit_sha else None)[0][0]


def enqueue(app, attempt_id) -> uuid.UUID:
    """enqueue_verification_job as ``app``; the job id."""
    return app.execute("SELECT enqueue_verification_job(%s)", (attempt_id,)).fetchone()[0]


def job_row(conn, job_id) -> dict | None:
    """The VerificationJob row as a dict, or None."""
    return _row(conn.execute('SELECT * FROM "VerificationJob" WHERE "id" = %s', (job_id,)))


def claim(worker, worker_id: str = "w1", lease: str = "5 minutes") -> dict | None:
    """claim_verification_job: the claimed row as a dict (with its leaseToken), or None."""
    return _row(worker.execute("SELECT * FROM claim_verification_job(%s, %s::interval)",
                               (worker_id, lease)))


def complete(worker, job_id, status: str, *, worker_id: str = "w1", exit_code=_DEFAULT,
             logs=None, lease_token=None) -> dict | None:
    """complete_verification_job as the lease holder; the job row as a dict.

    exit_code: 0 for PASSED, 1 otherwise unless given (None passes NULL); logs:
    {"summary": status} unless given. Without ``lease_token`` the connection must be
    the one that claimed the job (the claim keeps its lease token in the session).
    """
    if exit_code is _DEFAULT:
        exit_code = 0 if status == "PASSED" else 1
    return _row(worker.execute(
        'SELECT * FROM complete_verification_job(%s, %s, %s::"VerificationJobStatus", %s, %s,'
        ' %s)',
        (job_id, worker_id, status, exit_code,
         Jsonb(logs if logs is not None else {"summary": status}), lease_token)))


def claim_and_complete(worker, job_id, status: str = "PASSED", *,
                       worker_id: str = "w1") -> dict:
    """Claim ``job_id`` (it must be the one claimed) and complete it with ``status``."""
    got = claim(worker, worker_id)
    assert got is not None and got["id"] == job_id, f"claimed {got}, expected {job_id}"
    return complete(worker, job_id, status, worker_id=worker_id)


# ------------------------------------------------------------------ worlds


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
        return session_row(self.owner, self.session)


def queue_world(db) -> QueueWorld:
    owner = db.connect("owner")
    app = db.connect("app")
    worker = db.connect("worker")
    lab = add_lab(owner)
    user = add_user(owner)
    session = create_session(app, user, lab)
    return QueueWorld(db=db, owner=owner, app=app, worker=worker, lab=lab, user=user,
                      session=session)


def seed_world(db) -> dict:
    """Users 1-3, labs 1-2, sessions 1-2 (via create_lab_session), three pushes,
    one job PASSED (session 1 -> VERIFIED_PASS) and one FAILED, then a second
    version of lab 1."""
    owner = db.connect("owner")
    app = db.connect("app")
    worker = db.connect("worker")
    for n in (1, 2, 3):
        add_user(owner, n)
    for n in (1, 2):
        add_lab(owner, n)
    s1 = create_session(app, ids.user(1), ids.lab(1), 1)
    s2 = create_session(app, ids.user(2), ids.lab(1), 2)
    push(app, [commit(1)], n=1, delivery="d-1")
    push(app, [commit(2), commit(3)], n=1, delivery="d-2")
    push(app, [commit(4)], n=2, delivery="d-3")
    j1 = claim(worker, "w1")
    complete(worker, j1["id"], "PASSED", worker_id="w1")
    j2 = claim(worker, "w2")
    complete(worker, j2["id"], "FAILED", worker_id="w2")
    new_lab_version(owner, ids.lab(1), "v2")
    return {"s1": s1, "s2": s2, "jobs": [j1["id"], j2["id"]]}
