"""record_push writes a push's new commits with one INSERT: order, links and anchors.

A push that mixes commits the session already holds with new ones, in any
order, gets one row per new commit, chained in push order after the session's
newest row; the known commits keep their rows; the results, the head's job and
the audit row's anchors name exactly those rows.
"""

from __future__ import annotations

from tests.builders import commit, push, sha
from tests.test_push_ledger import Repo, chain, problems


def test_mixed_push_chains_only_new_commits_in_push_order(db):
    r = Repo(db)
    app = db.connect("app")
    owner = db.connect("owner")
    push(app, [commit(1), commit(2)], repo_id=r.repo_id, url=r.url, delivery="batch-1")
    before = chain(owner, r.session)
    # known commits at the start, in the middle and at the end; the head is known
    order = [2, 5, 3, 1, 7, 4]
    rows = push(app, [commit(n) for n in order], repo_id=r.repo_id, url=r.url, delivery="batch-2", head=sha(4))
    assert [(x[0], x[2], x[4]) for x in rows] == [
        (sha(2), False, "existing"), (sha(5), True, "recorded"), (sha(3), True, "recorded"),
        (sha(1), False, "existing"), (sha(7), True, "recorded"), (sha(4), True, "recorded")]
    after = chain(owner, r.session)
    assert after[:2] == before   # the known rows are untouched
    assert [(c[0], c[1]) for c in after[2:]] == [(3, sha(5)), (4, sha(3)), (5, sha(7)),
                                                 (6, sha(4))]
    for prev, row in zip(after, after[1:]):
        assert row[2] == prev[3]
    ids = {c[1]: c[4] for c in after}
    assert [x[1] for x in rows] == [ids[sha(n)] for n in order]
    # the job is the head's, reported on the head's row only
    job = owner.execute('SELECT "id", "labAttemptId" FROM "VerificationJob" '
                        'WHERE "commitSha" = %s', (sha(4),)).fetchone()
    assert job[1] == ids[sha(4)]
    assert [x[3] for x in rows] == [None] * 5 + [job[0]]
    meta = owner.execute(
        'SELECT "metadata" FROM "AuditLog" WHERE "action" = \'PUSH_RECORDED\' '
        "AND \"metadata\" ->> 'deliveryId' = 'batch-2'").fetchone()[0]
    assert (meta["created"], meta["existing"], meta["headLabAttemptId"]) == (
        4, 2, str(ids[sha(4)]))
    assert meta["attempts"] == [
        {"id": str(c[4]), "commitSha": c[1], "chainSeq": c[0], "rowHash": c[3].hex()}
        for c in after[2:]]
    assert problems(owner) == []


def test_hundred_commit_push_is_one_gapless_chain(db):
    r = Repo(db)
    app = db.connect("app")
    owner = db.connect("owner")
    rows = push(app, [commit(n) for n in range(100, 200)], repo_id=r.repo_id, url=r.url, delivery="batch-big")
    assert [x[4] for x in rows] == ["recorded"] * 100
    ch = chain(owner, r.session)
    assert [(c[0], c[1]) for c in ch] == [(k + 1, sha(100 + k)) for k in range(100)]
    assert ch[0][2] == b"\x00" * 32
    assert problems(owner) == []
