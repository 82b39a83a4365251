"""`harness rollback --preserve` followed by `harness apply` is the identity on data.

Production-like data (real upstream production, legacy rows, the whole chain)
gets rows through every function of the SQL API and the app's direct writes;
every table of schema public is then snapshotted (every column of every row),
rolled back to V0002 with preservation and applied again: every row comes back
with the same id, values and timestamps, and `harness verify` passes. A legacy
VerificationLog row copied by V0009 as a FAIL keeps reading FAIL after its
session really passed; the real PASS stays a live PASS. A row that cannot come
back makes the apply refuse with FM003, naming it, and change nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest
from psycopg.types.json import Jsonb

from harness import apply as A
from harness import ledger
from harness import verify as V
from harness.errors import HarnessError
from tests.builders import (
    add_lab, add_user, claim, claim_and_complete, complete, create_session, enqueue,
    push_head_job, repo_id_of,
)
from tests.helpers import legacy_checkpoint

TARGET = "V0002__roles_and_archive"


def _tables(conn) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1")]


def _snapshot(conn) -> dict[str, list[str]]:
    """Every row of every public table as jsonb text (all columns), in a stable order."""
    return {t: [r[0] for r in conn.execute(
        f'SELECT to_jsonb(t)::text FROM public."{t}" AS t ORDER BY 1')] for t in _tables(conn)}


def _applied(dsn, sql_root):
    return [m["id"] for m in A.status(dsn, sql_root)["applied"]]


def _archive_state(owner):
    return owner.execute(
        "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'forgea_archive' ORDER BY 1").fetchall()


def _forged_pass_scenario(owner, app, worker):
    """A legacy session whose VerificationLog row V0009 copied as FAIL, then passed for real."""
    sid, log_id, sha_old, url = owner.execute(
        'SELECT s."id", a."id", a."commitSha", m."repoUrl" FROM "VerificationAttempt" a'
        ' JOIN "LabSession" s ON s."id" = a."sessionId"'
        ' JOIN "GitHubRepoMapping" m ON m."sessionId" = s."id" AND m."sessionActive"'
        """ WHERE a."verificationJobId" IS NULL AND a."result" = 'FAIL'"""
        """ AND a."commitSha" ~ '^[0-9a-f]{40}$' AND s."status" = 'IN_PROGRESS'"""
        ' ORDER BY s."id" LIMIT 1').fetchone()
    repo_id = 987_654
    new_sha = "ab" * 20
    commits = [{"id": new_sha, "message": "real fix", "timestamp": "2026-02-11T08:00:00Z",
                "author": {"name": "Legacy", "email": "l@example.com", "username": "legacy"},
                "added": [], "modified": ["src/fix.ts"], "removed": []}]
    rows = app.execute(
        "SELECT commit_sha, lab_attempt_id, created, verification_job_id, outcome"
        " FROM record_push(%s, %s, %s, %s, %s, %s, %s)",
        ("legacy-delivery", repo_id, url, "refs/heads/main", new_sha,
         dt.datetime(2026, 2, 11, 8, 0, tzinfo=dt.timezone.utc), Jsonb(commits))).fetchall()
    assert rows[0][4] == "recorded", rows
    claim_and_complete(worker, rows[0][3], "PASSED", worker_id="legacy-worker")
    assert owner.execute('SELECT "status"::text FROM "LabSession" WHERE "id" = %s',
                         (sid,)).fetchone()[0] == "VERIFIED_PASS"
    return sid, log_id, sha_old, new_sha


def _write_through_every_api(db):
    """Rows written by every API function and the app's direct writes; returns the scenario."""
    owner, app, worker = db.connect("owner"), db.connect("app"), db.connect("worker")
    scenario = _forged_pass_scenario(owner, app, worker)

    # lab version publishing: an edit of a lab appends version 2 (V0005)
    lab = add_lab(owner)
    owner.execute('UPDATE "Lab" SET "repoVersion" = \'v2\' WHERE "id" = %s', (lab,))
    # create_lab_session (binding with providerRepoId and idempotency key), twice
    # with the same key (idempotent), resolve_lab_session
    users = [add_user(owner) for _ in range(3)]
    s1 = create_session(app, users[0], lab, 424_201)
    assert create_session(app, users[0], lab, 424_201) == s1
    s2 = create_session(app, users[1], lab, 424_202)
    s3 = create_session(app, users[2], lab, 424_203)
    assert app.execute("SELECT resolve_lab_session(%s, %s)", (repo_id_of(424_201), None)).fetchone()[0] == s1
    # record_push: a FAILED job, a PASSED one, a RUNNING one (lease token hash), a
    # QUEUED one; enqueue of an existing attempt is idempotent
    j_fail = push_head_job(app, "c1" * 20, n=424_202)
    claim_and_complete(worker, j_fail, "FAILED", worker_id="w-fail")
    j_pass = push_head_job(app, "c2" * 20, n=424_201)
    claim_and_complete(worker, j_pass, "PASSED", worker_id="w-pass")
    j_run = push_head_job(app, "c3" * 20, n=424_203)
    got = claim(worker, "w-run", "1 hour")
    assert got["id"] == j_run and got["leaseToken"] is not None
    j_queued = push_head_job(app, "c4" * 20, n=424_203)
    attempt = owner.execute('SELECT "labAttemptId" FROM "VerificationJob" WHERE "id" = %s',
                            (j_queued,)).fetchone()[0]
    assert enqueue(app, attempt) == j_queued
    # an ERROR completion (no attempt), then requeue (nothing expired: 0)
    s4 = create_session(app, add_user(owner), lab, 424_204)
    j_err = push_head_job(app, "c5" * 20, n=424_204)
    claim_and_complete(worker, j_err, "ERROR", worker_id="w-err")
    assert worker.execute("SELECT requeue_expired_verification_jobs()").fetchone()[0] == 0
    # the read-only helpers
    assert app.execute("SELECT count(*) FROM list_unmapped_lab_sessions()"
                       " WHERE session_id = %s", (s4,)).fetchone()[0] == 0
    assert app.execute(
        "SELECT canonical_repo_url('git@github.com:A/B.git'), lab_status_is_active('STUCK'),"
        " git_branch_name_valid('main')").fetchone() == ("https://github.com/a/b", True, True)
    # a rejected push (no active session): audited, not raised
    rej = app.execute(
        "SELECT outcome FROM record_push(%s, %s, %s, %s, %s, %s, %s)",
        ("rejected-delivery", 999_999, "https://github.com/nobody/none", "refs/heads/main",
         "d1" * 20, dt.datetime(2026, 2, 11, 9, 0, tzinfo=dt.timezone.utc),
         Jsonb([]))).fetchall()
    assert rej and rej[0][0] == "rejected", rej
    # session transitions as forgea_app (status, lastActivityAt)
    app.execute("""UPDATE "LabSession" SET "status" = 'STUCK',"""
                """ "lastActivityAt" = '2026-02-12 10:00:00' WHERE "id" = %s""", (s2,))
    app.execute("""UPDATE "LabSession" SET "status" = 'DEFERRED' WHERE "id" = %s""", (s2,))
    # verify_lab_attempt_chain (read only) and a checkpoint row
    readonly = db.connect("readonly")
    assert readonly.execute("SELECT count(*) FROM verify_lab_attempt_chain()").fetchone()[0] == 0
    ledger.record(owner, ledger.take_checkpoint(owner))
    # the running job completes later with its token: still RUNNING at rollback time
    return scenario, (j_run, got["leaseToken"])


def test_preserving_rollback_then_apply_gives_back_every_row_exactly(prod_db, sql_root):
    owner = prod_db.connect("owner")
    (sid, log_id, old_sha, new_sha), (j_run, token) = _write_through_every_api(prod_db)
    for t in ("LabVersion", "VerificationAttempt", "GitHubRepoMapping", "LabAttempt",
              "GitHubPushDelivery", "VerificationJob", "LedgerCheckpoint"):
        assert owner.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] > 0, t
    assert owner.execute('SELECT count(*) FROM "VerificationJob"'
                         ' WHERE "leaseTokenHash" IS NOT NULL').fetchone()[0] > 0
    before = _snapshot(owner)

    dsn = prod_db.dsn("owner")
    A.rollback(dsn, to=TARGET, preserve=True, sql_root=sql_root)
    assert _applied(dsn, sql_root)[-1] == TARGET
    assert owner.execute("SELECT to_regclass('public.\"LabAttempt\"')").fetchone()[0] is None
    A.apply(dsn, sql_root=sql_root)

    after = _snapshot(owner)
    assert sorted(after) == sorted(before)
    for table in before:
        assert after[table] == before[table], f"{table} differs after the round trip"
    # every archive was restored, none dropped
    comments = _archive_state(owner)
    assert {r[0].rsplit("_", 2)[0] for r in comments} == {
        "LabVersion", "LabSession_version_columns", "VerificationAttempt",
        "GitHubRepoMapping", "LabAttempt", "GitHubPushDelivery", "VerificationJob",
        "LedgerCheckpoint"}
    assert all(c.startswith("restored by V") for _, c in comments), comments

    # the forged-PASS scenario: the legacy copy still FAIL, the real attempt PASS
    assert owner.execute('SELECT "result"::text FROM "VerificationAttempt" WHERE "id" = %s',
                         (log_id,)).fetchone()[0] == "FAIL"
    assert owner.execute(
        'SELECT "result"::text FROM "VerificationAttempt" WHERE "sessionId" = %s'
        ' AND "commitSha" = %s AND "verificationJobId" IS NOT NULL',
        (sid, new_sha)).fetchone()[0] == "PASS"

    report = V.verify(dsn, sql_root=sql_root, checkpoint=legacy_checkpoint(dsn))
    assert report.ok, V.render_table(report)
    assert owner.execute("SELECT count(*) FROM verify_lab_attempt_chain()").fetchone()[0] == 0
    # the restored RUNNING job still completes with the token of its run
    worker = prod_db.connect("worker")
    done = complete(worker, j_run, "PASSED", worker_id="w-run", lease_token=token)
    assert done["status"] == "PASSED"


def test_apply_refuses_to_restore_values_of_a_session_deleted_while_rolled_back(
        prod_db, sql_root):
    owner, app = prod_db.connect("owner"), prod_db.connect("app")
    lab = add_lab(owner)
    user = add_user(owner)
    sid = create_session(app, user, lab, 515_151)
    dsn = prod_db.dsn("owner")
    A.rollback(dsn, to=TARGET, preserve=True, sql_root=sql_root)
    # while rolled back, the session (no legacy rows reference it) is deleted
    owner.execute('DELETE FROM "LabSession" WHERE "id" = %s', (sid,))
    A.apply(dsn, to="V0005__lab_version_guards", sql_root=sql_root)
    at = _applied(dsn, sql_root)
    before = _snapshot(owner)
    archives = _archive_state(owner)

    with pytest.raises(HarnessError) as exc:
        A.apply(dsn, sql_root=sql_root)
    assert exc.value.sqlstate == "FM003", exc.value
    assert str(sid) in str(exc.value)
    assert "V0006" in str(exc.value)

    assert _applied(dsn, sql_root) == at
    assert _snapshot(owner) == before
    assert _archive_state(owner) == archives


def test_apply_refuses_an_archived_binding_whose_session_ended_while_rolled_back(
        prod_db, sql_root):
    owner, app = prod_db.connect("owner"), prod_db.connect("app")
    sid = create_session(app, add_user(owner), add_lab(owner), 616_161)
    dsn = prod_db.dsn("owner")
    A.rollback(dsn, to=TARGET, preserve=True, sql_root=sql_root)
    # the legacy lifecycle lets the old app end the session while rolled back:
    # the archived binding (sessionActive) now contradicts it
    owner.execute("""UPDATE "LabSession" SET "status" = 'VERIFIED_PASS' WHERE "id" = %s""",
                  (sid,))
    A.apply(dsn, to="V0013__lab_session_one_active", sql_root=sql_root)
    at, before, archives = _applied(dsn, sql_root), _snapshot(owner), _archive_state(owner)

    with pytest.raises(HarnessError) as exc:
        A.apply(dsn, sql_root=sql_root)
    assert exc.value.sqlstate == "FM003", exc.value
    assert str(sid) in str(exc.value) and "V0014" in str(exc.value)
    assert _applied(dsn, sql_root) == at
    assert _snapshot(owner) == before
    assert _archive_state(owner) == archives


def test_a_lab_edited_while_rolled_back_keeps_its_versions_and_gains_the_next(
        prod_db, sql_root):
    owner = prod_db.connect("owner")
    lab = add_lab(owner)
    versions = owner.execute('SELECT "id", "versionNumber", "snapshot", "createdAt"'
                             ' FROM "LabVersion" WHERE "labId" = %s', (lab,)).fetchall()
    assert [v[1] for v in versions] == [1]
    dsn = prod_db.dsn("owner")
    A.rollback(dsn, to=TARGET, preserve=True, sql_root=sql_root)
    owner.execute("""UPDATE "Lab" SET "title" = 'Edited while rolled back' WHERE "id" = %s""",
                  (lab,))
    A.apply(dsn, sql_root=sql_root)
    got = owner.execute('SELECT "id", "versionNumber", "snapshot", "createdAt"'
                        ' FROM "LabVersion" WHERE "labId" = %s ORDER BY 2', (lab,)).fetchall()
    assert got[0] == versions[0]
    assert [v[1] for v in got] == [1, 2]
    assert got[1][2]["title"] == "Edited while rolled back"
    assert V.verify(dsn, sql_root=sql_root, checkpoint=legacy_checkpoint(dsn)).ok
