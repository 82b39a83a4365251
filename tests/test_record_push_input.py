"""record_push refuses every malformed field with its SQLSTATE and writes nothing;
pushes without an active session are rejected but audited."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from tests.builders import add_lab, add_user, commit, create_session, push, sha
from tests.helpers import digests, raises_sqlstate

PUSHED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
WATCHED = ("LabAttempt", "AuditLog", "GitHubRepoMapping", "GitHubPushDelivery",
           "VerificationJob", "LabSession")


@pytest.fixture
def bound(db):
    owner = db.connect("owner")
    user, lab = add_user(owner), add_lab(owner)
    tag = uuid.uuid4().hex[:8]
    url = f"https://github.com/in-{tag}/repo"
    session = create_session(db.connect("app"), user, lab, repo_id=4242, url=url, key=f"k-{tag}")
    return {"url": url, "repo_id": 4242, "session": session, "user": user}


def good(bound):
    return {"delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "repo_id": bound["repo_id"],
            "url": bound["url"], "ref": "refs/heads/main", "head": sha(2),
            "pushed_at": PUSHED_AT, "commits": [commit(1), commit(2)]}


def _set(path, value):
    def mutate(a):
        if len(path) == 1:
            a[path[0]] = value
            return
        target = a["commits"]
        for k in path[1:-1]:
            target = target[k]
        if value is _DEL:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return mutate


_DEL = object()
BIG = ["p/" + "x" * 10 for _ in range(3001)]

MALFORMED = [
    # (id, mutation, sqlstate, field named in the message)
    ("delivery-null", _set(["delivery"], None), "22023", "p_delivery_id"),
    ("delivery-empty", _set(["delivery"], ""), "22023", "p_delivery_id"),
    ("delivery-long", _set(["delivery"], "a" * 101), "22023", "p_delivery_id"),
    ("delivery-space", _set(["delivery"], "abc def"), "22023", "p_delivery_id"),
    ("repo-id-zero", _set(["repo_id"], 0), "22023", "p_provider_repo_id"),
    ("repo-id-negative", _set(["repo_id"], -5), "22023", "p_provider_repo_id"),
    ("url-other-host", _set(["url"], "https://gitlab.com/a/b"), "22023", "p_repo_url"),
    ("url-null", _set(["url"], None), "22023", "p_repo_url"),
    ("ref-tag", _set(["ref"], "refs/tags/v1"), "22023", "p_ref"),
    ("ref-bare", _set(["ref"], "main"), "22023", "p_ref"),
    ("ref-empty-branch", _set(["ref"], "refs/heads/"), "22023", "p_ref"),
    ("ref-dotdot", _set(["ref"], "refs/heads/a..b"), "22023", "p_ref"),
    ("ref-space", _set(["ref"], "refs/heads/a b"), "22023", "p_ref"),
    ("ref-lock", _set(["ref"], "refs/heads/x.lock"), "22023", "p_ref"),
    ("ref-control", _set(["ref"], "refs/heads/a\x01b"), "22023", "p_ref"),
    ("head-upper", _set(["head"], sha(2).upper().replace("0", "A")), "22023", "p_head_sha"),
    ("head-short", _set(["head"], "abc123"), "22023", "p_head_sha"),
    ("head-nonhex", _set(["head"], "g" * 40), "22023", "p_head_sha"),
    ("head-not-in-commits", _set(["head"], sha(99)), "22023", "p_head_sha"),
    ("pushed-at-null", _set(["pushed_at"], None), "22023", "p_pushed_at"),
    ("pushed-at-infinite", _set(["pushed_at"], "infinity"), "22023", "p_pushed_at"),
    ("commits-null", _set(["commits"], None), "22023", "p_commits"),
    ("commits-object", lambda a: a.__setitem__("commits", {"id": sha(2)}), "22023", "p_commits"),
    ("commits-too-many", lambda a: a.__setitem__("commits", [commit(i) for i in range(1, 2050)]),
     "22023", "p_commits"),
    ("commits-empty-unknown-head", lambda a: a.__setitem__("commits", []), "22023", "p_commits"),
    ("commit-not-object", lambda a: a["commits"].__setitem__(0, "abc"), "22023", "p_commits[0]"),
    ("commit-id-upper", _set(["commits", 0, "id"], "A" * 40), "22023", "p_commits[0].id"),
    ("commit-id-39", _set(["commits", 0, "id"], "a" * 39), "22023", "p_commits[0].id"),
    ("commit-id-number", _set(["commits", 0, "id"], 12345), "22023", "p_commits[0].id"),
    ("commit-id-duplicate", _set(["commits", 0, "id"], sha(2)), "22023", "p_commits[1].id"),
    ("author-missing", _set(["commits", 0, "author"], _DEL), "22023", "p_commits[0].author"),
    ("author-name-missing", _set(["commits", 0, "author", "name"], _DEL), "22023",
     "p_commits[0].author.name"),
    ("author-name-empty", _set(["commits", 0, "author", "name"], "  "), "22023",
     "p_commits[0].author.name"),
    ("author-email-number", _set(["commits", 1, "author", "email"], 7), "22023",
     "p_commits[1].author.email"),
    ("author-username-object", _set(["commits", 1, "author", "username"], {}), "22023",
     "p_commits[1].author.username"),
    ("added-not-array", _set(["commits", 0, "added"], "a.py"), "22023", "p_commits[0].added"),
    ("modified-missing", _set(["commits", 0, "modified"], _DEL), "22023", "p_commits[0].modified"),
    ("removed-number-path", _set(["commits", 1, "removed"], ["ok", 3]), "22023",
     "p_commits[1].removed"),
    ("added-empty-path", _set(["commits", 1, "added"], [""]), "22023", "p_commits[1].added"),
    ("added-over-cap", _set(["commits", 1, "added"], BIG), "22023", "p_commits[1].added"),
    ("timestamp-missing", _set(["commits", 0, "timestamp"], _DEL), "22023",
     "p_commits[0].timestamp"),
    ("timestamp-garbage", _set(["commits", 0, "timestamp"], "yesterday"), "22023",
     "p_commits[0].timestamp"),
]


@pytest.mark.parametrize("mutate,code,field", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_input_refused_and_nothing_written(db, bound, mutate, code, field):
    args = copy.deepcopy(good(bound))
    mutate(args)
    owner = db.connect("owner")
    before = digests(owner, WATCHED)
    with raises_sqlstate(code) as exc:
        push(db.connect("app"), **args)
    assert f"record_push: {field} " in str(exc.value)
    assert digests(owner, WATCHED) == before


def test_oversized_payload_refused(db, bound):
    args = good(bound)
    # 25 MB of paths that do not compress: 2048 commits x 3 lists x ~1450 random paths
    import os
    commits = []
    for i in range(1, 2049):
        commits.append(commit(i, added=[os.urandom(12).hex() for _ in range(1000)],
                              modified=[os.urandom(12).hex() for _ in range(100)]))
    args["commits"] = commits
    args["head"] = sha(2048)
    owner = db.connect("owner")
    before = digests(owner, WATCHED)
    with raises_sqlstate("22023") as exc:
        push(db.connect("app"), **args)
    assert "record_push: p_commits must not exceed 25 MB" in str(exc.value)
    assert digests(owner, WATCHED) == before


@pytest.mark.parametrize("where", ["path", "author"])
def test_nul_bytes_never_reach_the_ledger(db, bound, where):
    args = good(bound)
    owner = db.connect("owner")
    before = digests(owner, WATCHED)
    text = ('{"id": "%s", "timestamp": "2026-03-01T12:00:00Z", "author": {"name": "%s"}, '
            '"added": ["%s"], "modified": [], "removed": []}') % (
        sha(2), "a\\u0000b" if where == "author" else "Ada",
        "a\\u0000b" if where == "path" else "ok")
    with raises_sqlstate("22P05"):
        db.connect("app").execute(
            "SELECT * FROM record_push(%s, %s, %s, %s, %s, %s, %s::jsonb)",
            (args["delivery"], args["repo_id"], args["url"], args["ref"], sha(2), PUSHED_AT,
             "[" + text + "]"))
    with pytest.raises(psycopg.DataError):  # text parameters cannot carry NUL at all
        db.connect("app").execute("SELECT * FROM record_push(%s, 1, 'x', 'x', 'x', now(), '[]')",
                                  ("a\x00b",))
    assert digests(owner, WATCHED) == before


def test_sha256_commits_accepted(db, bound):
    args = good(bound)
    args["commits"] = [commit(1, id="ab" * 32)]
    args["head"] = "ab" * 32
    rows = push(db.connect("app"), **args)
    assert rows[0][0] == "ab" * 32 and rows[0][4] == "recorded"


def test_valid_push_after_refusals_is_recorded(db, bound):
    rows = push(db.connect("app"), **good(bound))
    assert [r[4] for r in rows] == ["recorded", "recorded"]


# ------------------------------------------------------------------ rejection


def _audits(owner, action):
    return owner.execute(
        'SELECT "userId", "actorId", "metadata" FROM "AuditLog" WHERE "action" = %s', (action,)
    ).fetchall()


def test_push_without_session_rejected_and_audited(db, bound):
    args = good(bound)
    args["repo_id"], args["url"] = 999_999, "https://github.com/nobody/nothing"
    owner = db.connect("owner")
    before = digests(owner, ("LabAttempt", "GitHubRepoMapping", "GitHubPushDelivery"))
    rows = push(db.connect("app"), **args)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (sha(1), None, False, None, "rejected"), (sha(2), None, False, None, "rejected")]
    assert digests(owner, tuple(before)) == before
    (audit,) = _audits(owner, "PUSH_REJECTED")
    assert audit[0] is None and audit[1] == "github-webhook"
    assert audit[2]["deliveryId"] == args["delivery"]
    assert audit[2]["sqlstate"] == "FL003"
    assert audit[2]["reason"] == "no session is bound to the repository"


def test_push_to_terminal_session_rejected_and_audited(db, bound):
    owner = db.connect("owner")
    db.connect("app").execute(
        'UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (bound["session"],))
    before = digests(owner, ("LabAttempt", "GitHubPushDelivery"))
    rows = push(db.connect("app"), **good(bound))
    assert {r[4] for r in rows} == {"rejected"}
    assert digests(owner, tuple(before)) == before
    (audit,) = _audits(owner, "PUSH_REJECTED")
    assert audit[0] == bound["user"]
    assert "FAILED" in audit[2]["reason"]


def test_url_match_with_another_repository_id_is_rejected(db, bound):
    """The repository at this URL was deleted and re-created: another id, not our session."""
    push(db.connect("app"), **good(bound))  # fills providerRepoId 4242 (already set)
    args = good(bound)
    args["delivery"], args["repo_id"] = "other-repo", 777
    rows = push(db.connect("app"), **args)
    assert {r[4] for r in rows} == {"rejected"}
