"""The attack suite: every test is an attack that must be refused.

Modules = categories: test_privilege, test_search_path, test_hostile_input,
test_races, test_faults, test_identity (who or what a row belongs to),
test_backup (dump and restore of extreme accepted values, then verify). conftest.py counts attacks tried / blocked /
succeeded per category and prints the table at the end of the run.

This package also holds the small data builders the attacks and
tests/test_verify.py share (a "world" with users, labs, sessions, pushes,
jobs and attempts, built only through the pack's API where one exists).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from tests.helpers import ids, sha

NOW = datetime(2026, 2, 10, 10, 0, tzinfo=timezone.utc)


def commit(sha_: str, name: str = "Dev", files=("src/a.py",)) -> dict:
    return {"id": sha_, "author": {"name": name, "email": "dev@example.com",
                                   "username": "dev"},
            "added": list(files), "modified": [], "removed": [],
            "timestamp": "2026-02-10T10:00:00Z"}


def fork(n: int) -> str:
    return f"https://github.com/dev{n}/lab-{n}"


def add_user(conn, n: int) -> uuid.UUID:
    conn.execute('INSERT INTO "User" (id, email, "githubId") VALUES (%s, %s, %s) '
                 "ON CONFLICT DO NOTHING", (ids.user(n), f"user{n}@example.com", f"gh{n}"))
    return ids.user(n)


def add_lab(conn, n: int) -> uuid.UUID:
    conn.execute('INSERT INTO "Lab" (id, title, epic, "failureClass", "sourceGithubIssueUrl", '
                 '"repoVersion", "baseRepoUrl", constraints) VALUES (%s, %s, %s, '
                 "'RESOURCE_LEAK', 'https://github.com/forgea/labs/issues/1', 'v1', "
                 "'https://github.com/forgea/lab-1', '{\"maxMinutes\": 60}') "
                 "ON CONFLICT DO NOTHING", (ids.lab(n), f"Lab {n}", "Epic"))
    return ids.lab(n)


def create_session(app, user, lab, n: int, repo_id: int | None = None, key=None):
    return app.execute("SELECT create_lab_session(%s, %s, %s, %s, %s)",
                       (user, lab, fork(n), repo_id if repo_id is not None else 1000 + n,
                        key or f"key-{n}")).fetchone()[0]


def push(app, n: int, delivery: str, shas: list[str], repo_id: int | None = None):
    from psycopg.types.json import Jsonb
    return app.execute(
        "SELECT * FROM record_push(%s, %s, %s, %s, %s, %s, %s)",
        (delivery, repo_id if repo_id is not None else 1000 + n, fork(n), "refs/heads/main",
         shas[-1], NOW, Jsonb([commit(s) for s in shas]))).fetchall()


def claim(worker, worker_id: str = "w1", lease: str = "5 minutes"):
    """(id, sessionId, commitSha, leaseToken) of the claimed job, or None."""
    return worker.execute("SELECT id, \"sessionId\", \"commitSha\", \"leaseToken\" FROM "
                          "claim_verification_job(%s, %s::interval)",
                          (worker_id, lease)).fetchone()


def complete(worker, job_id, status: str, worker_id: str = "w1", logs=None, token=None):
    """Complete as the lease holder; without ``token`` the connection must be the
    one that claimed the job (the claim keeps its lease token in the session)."""
    from psycopg.types.json import Jsonb
    return worker.execute(
        "SELECT id, status::text FROM complete_verification_job(%s, %s, %s, %s, %s, %s)",
        (job_id, worker_id, status, 0 if status == "PASSED" else 1,
         Jsonb(logs if logs is not None else {"summary": status}), token)).fetchone()


def seed_world(db) -> dict:
    """Users 1-3, labs 1-2, sessions 1-2 (via create_lab_session), three pushes,
    one job PASSED (session 1 -> VERIFIED_PASS) and one FAILED."""
    owner = db.connect("owner")
    app = db.connect("app")
    worker = db.connect("worker")
    for n in (1, 2, 3):
        add_user(owner, n)
    for n in (1, 2):
        add_lab(owner, n)
    s1 = create_session(app, ids.user(1), ids.lab(1), 1)
    s2 = create_session(app, ids.user(2), ids.lab(1), 2)
    push(app, 1, "d-1", [sha(1)])
    push(app, 1, "d-2", [sha(2), sha(3)])
    push(app, 2, "d-3", [sha(4)])
    j1 = claim(worker, "w1")
    complete(worker, j1[0], "PASSED", "w1")
    j2 = claim(worker, "w2")
    complete(worker, j2[0], "FAILED", "w2")
    # the lab changes: a second version
    owner.execute('UPDATE "Lab" SET "repoVersion" = %s WHERE id = %s', ("v2", ids.lab(1)))
    return {"s1": s1, "s2": s2, "jobs": [j1[0], j2[0]]}
