"""Canonical repository URLs, GitHubRepoMapping, create_lab_session,
resolve_lab_session, and the mapping backfill from LabSession.userForkUrl."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from harness import apply as A
from harness.errors import MigrationFailed
from tests.chain_ids import version_of
from tests.helpers import digests, raises_sqlstate
from tests.builders import (
    add_lab, add_user, commit, create_session, legacy_session, push, resolve_session,
)

CANON = "https://github.com/octo-cat/hello.world_x-1"

URLS = [
    # (input, canonical result or None)
    ("https://github.com/Octo-Cat/Hello.World_x-1", CANON),
    ("https://github.com/octo-cat/hello.world_x-1.git", CANON),
    ("https://github.com/octo-cat/hello.world_x-1/", CANON),
    ("https://github.com/octo-cat/hello.world_x-1.git/", CANON),
    ("https://github.com/octo-cat/hello.world_x-1///", CANON),
    ("http://github.com/octo-cat/hello.world_x-1", CANON),
    ("https://www.github.com/octo-cat/hello.world_x-1", CANON),
    ("HTTPS://WWW.GITHUB.COM/OCTO-CAT/HELLO.WORLD_X-1.GIT", CANON),
    ("ssh://git@github.com/octo-cat/hello.world_x-1.git", CANON),
    ("git@github.com:Octo-Cat/hello.world_x-1.git", CANON),
    ("git@github.com:octo-cat/hello.world_x-1", CANON),
    ("https://github.com/a/b", "https://github.com/a/b"),
    ("https://github.com/" + "o" * 39 + "/" + "r" * 100,
     "https://github.com/" + "o" * 39 + "/" + "r" * 100),
    # hostile or malformed
    ("https://github.com/" + "o" * 40 + "/r", None),
    ("https://github.com/o/" + "r" * 101, None),
    ("https://gitlab.com/octo-cat/hello", None),
    ("https://github.com.evil.com/octo-cat/hello", None),
    ("https://evil.com/github.com/octo-cat/hello", None),
    ("https://gist.github.com/octo-cat/hello", None),
    ("https://github.com:443/octo-cat/hello", None),
    ("https://user:pass@github.com/octo-cat/hello", None),
    ("https://token@github.com/octo-cat/hello", None),
    ("https://github.com/octo-cat/hello?tab=readme", None),
    ("https://github.com/octo-cat/hello#readme", None),
    ("https://github.com/octo-cat/hello/tree/main", None),
    ("https://github.com/octo-cat/hello/pulls", None),
    ("https://github.com/octo-cat", None),
    ("https://github.com/", None),
    ("https://github.com/octo-cat/..", None),
    ("https://github.com/octo-cat/.", None),
    ("https://github.com/../hello", None),
    ("https://github.com/-octo/hello", None),
    ("https://github.com/octo-/hello", None),
    ("https://github.com/octo_cat/hello", None),
    ("https://github.com/octo%2Fcat/hello", None),
    ("https://github.com/octo cat/hello", None),
    (" https://github.com/octo-cat/hello", None),
    ("https://github.com/octo-cat/hello\n", None),
    ("https://github.com/octo-cat/hello\t", None),
    ("https://github.com/octo-cat/he\x01llo", None),
    ("https://github.com/octo-cat/hellö", None),
    ("https://github.com/octo-cat/hello\u200b", None),
    ("github.com/octo-cat/hello", None),
    ("ftp://github.com/octo-cat/hello", None),
    ("git://github.com/octo-cat/hello", None),
    ("ssh://root@github.com/octo-cat/hello", None),
    ("git@github.com/octo-cat/hello", None),
    ("javascript:alert(1)//github.com/a/b", None),
    ("", None),
    ("https://github.com/a/b" + "/" * 600, None),
]


@pytest.mark.parametrize("url,expected", URLS, ids=[f"u{i}" for i in range(len(URLS))])
def test_canonical_repo_url(db, url, expected):
    conn = db.connect("app")
    assert conn.execute("SELECT canonical_repo_url(%s)", (url,)).fetchone()[0] == expected


def test_canonical_repo_url_null_and_immutable(db):
    conn = db.connect("readonly")
    assert conn.execute("SELECT canonical_repo_url(NULL)").fetchone()[0] is None
    assert conn.execute(
        "SELECT provolatile FROM pg_proc WHERE proname = 'canonical_repo_url'").fetchone()[0] == "i"


# The first implementation (one regex with a lazy name group), kept here as the
# reference the faster prefix/split_part version must agree with everywhere.
REGEX_REFERENCE = r"""
CREATE FUNCTION pg_temp.canonical_repo_url_regex(url text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE
    m text[];
BEGIN
    IF url IS NULL OR length(url) > 500 OR url ~ '[[:space:][:cntrl:]]' THEN
        RETURN NULL;
    END IF;
    m := regexp_match(lower(url),
        '^(?:https?://(?:www\.)?github\.com/|ssh://git@github\.com/|git@github\.com:)'
        || '([^/]+)/([^/]+?)(?:\.git)?/*$');
    IF m IS NULL OR m[1] !~ '^[a-z0-9]([a-z0-9-]{0,37}[a-z0-9])?$'
        OR m[2] !~ '^[a-z0-9._-]{1,100}$' OR m[2] IN ('.', '..') THEN
        RETURN NULL;
    END IF;
    RETURN 'https://github.com/' || m[1] || '/' || m[2];
END;
$f$
"""

URL_PARTS = {
    "prefix": ["https://github.com/", "http://github.com/", "https://www.github.com/",
               "HTTP://WWW.GITHUB.COM/", "ssh://git@github.com/", "git@github.com:",
               "git@github.com/", "https://github.com:", "https://gist.github.com/", ""],
    "owner": ["owner", "Own-er", "-own", "a", "", "o_o", ".", "own/", "a.git", "x" * 40],
    "sep": ["/", "//", ":", ""],
    "name": ["name", ".git", "..git", "a.git", "x.git.git", ".", "..", "n.GIT", "na me", "",
             "name/", "name//", "name.git/", "name/.git", "name/x", ".git.git", "...", "git",
             "x.gi", "é", "n" * 101],
    "tail": ["", "/", "///", ".git", ".git/", "?x=1", "#f", "/tree/main", "\n"],
}


def test_canonical_repo_url_agrees_with_the_first_regex_implementation(db):
    """Every combination of the parts above (75,600 URLs), in one query."""
    conn = db.connect("owner")
    conn.execute(REGEX_REFERENCE)
    cols = list(URL_PARTS)
    rows = conn.execute(
        "SELECT count(*), array_agg(u) FILTER (WHERE canonical_repo_url(u)"
        " IS DISTINCT FROM pg_temp.canonical_repo_url_regex(u)),"
        " count(canonical_repo_url(u))"
        f" FROM (SELECT {' || '.join(cols)} AS u FROM"
        + " CROSS JOIN ".join(f"(SELECT unnest(%s::text[]) AS {c}) AS t_{c}" for c in cols)
        + ") AS q", [URL_PARTS[c] for c in cols]).fetchone()
    total, differing, parsed = rows
    assert total == 75600
    assert differing is None, differing[:20]
    assert parsed > 100  # the combinations include many valid URLs, not only refusals


# ------------------------------------------------------------------ create / resolve


@pytest.fixture
def ctx(db):
    owner = db.connect("owner")
    return {"owner": owner, "app": db.connect("app"), "user": add_user(owner),
            "lab": add_lab(owner), "tag": uuid.uuid4().hex[:8]}


def create(conn, ctx, url=None, repo_id=None, key=None, user=None, lab=None):
    """create_session with the context's user, lab, URL and key unless given;
    ``repo_id`` None: a URL-bound session."""
    return create_session(conn, user or ctx["user"], lab or ctx["lab"],
                          url=url or f"https://github.com/U-{ctx['tag']}/Repo.git",
                          repo_id=repo_id, key=key or f"key-{ctx['tag']}")


WATCHED = ("LabSession", "GitHubRepoMapping", "AuditLog")


def test_create_lab_session_is_atomic_and_idempotent(db, ctx):
    s1 = create(ctx["app"], ctx, repo_id=11)
    m = ctx["owner"].execute(
        'SELECT "providerRepoId", "repoFullName", "repoUrl", "sessionActive", "provider" '
        'FROM "GitHubRepoMapping" WHERE "sessionId" = %s', (s1,)).fetchone()
    assert m == (11, f"u-{ctx['tag']}/repo", f"https://github.com/u-{ctx['tag']}/repo", True, "github")
    s = ctx["owner"].execute(
        'SELECT "status", "userId", "labId", "labVersionId" IS NOT NULL FROM "LabSession" '
        'WHERE "id" = %s', (s1,)).fetchone()
    assert s == ("IN_PROGRESS", ctx["user"], ctx["lab"], True)
    before = digests(ctx["owner"], WATCHED)
    assert create(ctx["app"], ctx, repo_id=11) == s1
    assert digests(ctx["owner"], WATCHED) == before
    # same key, other arguments
    with raises_sqlstate("22023"):
        create(ctx["app"], ctx, repo_id=12)
    with raises_sqlstate("22023"):
        create(ctx["app"], ctx, url="https://github.com/other/repo", repo_id=11)
    assert digests(ctx["owner"], WATCHED) == before


@pytest.mark.parametrize("field,kwargs", [
    ("p_fork_url", {"url": "https://gitlab.com/a/b"}),
    ("p_fork_url", {"url": "https://github.com/a/b/tree/x"}),
    ("p_provider_repo_id", {"repo_id": 0}),
    ("p_idempotency_key", {"key": " "}),
    ("p_idempotency_key", {"key": "k" * 201}),
    ("p_idempotency_key", {"key": "a\x01b"}),
])
def test_create_lab_session_bad_input(db, ctx, field, kwargs):
    before = digests(ctx["owner"], WATCHED)
    with raises_sqlstate("22023") as exc:
        create(ctx["app"], ctx, **kwargs)
    assert f"create_lab_session: {field}" in str(exc.value)
    assert digests(ctx["owner"], WATCHED) == before


def test_one_active_session_per_repository(db, ctx):
    create(ctx["app"], ctx, repo_id=21)
    other_user = add_user(ctx["owner"])
    before = digests(ctx["owner"], WATCHED)
    # the same URL in another spelling, another user
    with raises_sqlstate("23505"):
        create(ctx["app"], ctx, url=f"git@github.com:u-{ctx['tag']}/repo.git", user=other_user,
               key="k2")
    # the same repository id under another URL (renamed)
    with raises_sqlstate("23505"):
        create(ctx["app"], ctx, url="https://github.com/x/renamed", repo_id=21, user=other_user,
               key="k3")
    assert digests(ctx["owner"], WATCHED) == before


def test_terminal_session_frees_the_repository(db, ctx):
    s1 = create(ctx["app"], ctx, repo_id=31)
    ctx["app"].execute('UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (s1,))
    assert ctx["owner"].execute(
        'SELECT "sessionActive" FROM "GitHubRepoMapping" WHERE "sessionId" = %s', (s1,)
    ).fetchone()[0] is False
    assert resolve_session(ctx["app"], 31, None) is None
    s2 = create(ctx["app"], ctx, repo_id=31, key="k-new")
    assert s2 != s1 and resolve_session(ctx["app"], 31, None) == s2


def test_concurrent_creates(db, ctx):
    n = 20
    conns = [psycopg.connect(db.dsn("app"), autocommit=True) for _ in range(n)]
    users = [add_user(ctx["owner"]) for _ in range(n)]
    barrier = threading.Barrier(n)
    same_key, errors = [None] * n, []

    def run(i, fn):
        try:
            barrier.wait(30)
            same_key[i] = fn(i)
        except psycopg.Error as e:
            errors.append(e.sqlstate)

    def go(fn):
        threads = [threading.Thread(target=run, args=(i, fn)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    # one idempotency key from 20 connections: one session
    go(lambda i: create(conns[i], ctx, repo_id=41))
    assert errors == [] and len(set(same_key)) == 1
    # 20 users racing for one repository with different keys: exactly one wins
    same_key[:] = [None] * n
    go(lambda i: create(conns[i], ctx, url="https://github.com/race/repo", user=users[i],
                        key=f"race-{i}"))
    for c in conns:
        c.close()
    assert len([s for s in same_key if s]) == 1 and errors == ["23505"] * (n - 1)
    assert ctx["owner"].execute(
        'SELECT count(*) FROM "GitHubRepoMapping" WHERE "repoUrl" = \'https://github.com/race/repo\''
    ).fetchone()[0] == 1


def test_resolve_by_id_then_url_and_rename(db, ctx):
    s1 = create(ctx["app"], ctx, repo_id=None)
    canon = f"https://github.com/u-{ctx['tag']}/repo"
    assert resolve_session(ctx["app"], None, canon + ".git") == s1
    assert resolve_session(ctx["app"], 51, canon) == s1            # id unknown yet: URL binds
    assert resolve_session(ctx["app"], 51, "https://github.com/x/y") is None
    # the first push carrying the id fills it in
    ctx["app"].execute(
        "SELECT * FROM record_push('d1', 51, %s, 'refs/heads/main', %s, now(), "
        "jsonb_build_array(jsonb_build_object('id', %s::text, 'timestamp', '2026-01-01T00:00:00Z', "
        "'author', jsonb_build_object('name', 'A'), 'added', '[]'::jsonb, "
        "'modified', '[]'::jsonb, 'removed', '[]'::jsonb)))",
        (canon, "c" * 40, "c" * 40))
    # the repository is renamed: the id still binds
    assert resolve_session(ctx["app"], 51, "https://github.com/new-owner/new-name") == s1
    # another repository now living at the old URL does not
    assert resolve_session(ctx["app"], 52, canon) is None
    assert resolve_session(ctx["app"], None, canon) == s1


def test_provider_repo_id_is_filled_once(db, ctx):
    s1 = create(ctx["app"], ctx)
    owner = ctx["owner"]
    owner.execute('UPDATE "GitHubRepoMapping" SET "providerRepoId" = 61 WHERE "sessionId" = %s', (s1,))
    before = digests(owner, WATCHED)
    for stmt in ('UPDATE "GitHubRepoMapping" SET "providerRepoId" = 62',
                 'UPDATE "GitHubRepoMapping" SET "providerRepoId" = NULL',
                 'UPDATE "GitHubRepoMapping" SET "repoUrl" = \'https://github.com/a/b\', '
                 '"repoFullName" = \'a/b\'',
                 'UPDATE "GitHubRepoMapping" SET "sessionActive" = false',
                 'UPDATE "GitHubRepoMapping" SET "sessionId" = "sessionId"'):
        code = "FA002"
        if "sessionId\" = \"sessionId" in stmt:
            owner.execute(stmt)  # a no-op update is allowed
            continue
        with raises_sqlstate(code):
            owner.execute(stmt)
    assert digests(owner, WATCHED) == before
    with raises_sqlstate("FA001"):
        owner.execute('DELETE FROM "GitHubRepoMapping"')
    with raises_sqlstate("FA001"):
        owner.execute('TRUNCATE "GitHubRepoMapping"')
    assert digests(owner, WATCHED) == before


def test_app_insert_of_session_is_bound_at_commit(db, ctx):
    sid = uuid.uuid4()
    ctx["app"].execute(
        'INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") VALUES (%s, %s, %s, %s)',
        (sid, ctx["user"], ctx["lab"], "https://GitHub.com/Legacy/Client.git"))
    assert ctx["owner"].execute(
        'SELECT "repoUrl", "sessionActive" FROM "GitHubRepoMapping" WHERE "sessionId" = %s', (sid,)
    ).fetchone() == ("https://github.com/legacy/client", True)
    sid2 = uuid.uuid4()
    ctx["app"].execute(
        'INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") VALUES (%s, %s, %s, %s)',
        (sid2, add_user(ctx["owner"]), ctx["lab"], "not a url"))
    assert ctx["owner"].execute(
        "SELECT reason FROM list_unmapped_lab_sessions() WHERE session_id = %s", (sid2,)
    ).fetchone() == ("unparseable fork URL",)


# ------------------------------------------------------------------ backfill


def _below_the_repo_mapping(dsn):
    return [m["id"] for m in A.status(dsn)["applied"] if m["id"][:5] < version_of("repo_mapping")][-1]


def test_backfill_maps_parseable_urls_and_reports_the_rest(db, sql_root):
    dsn = db.dsn("owner")
    A.rollback(dsn, to=_below_the_repo_mapping(dsn), sql_root=sql_root)
    owner = db.connect("owner")
    lab = add_lab(owner)
    good = {}
    for i in range(12):
        u = add_user(owner)
        good[legacy_session(owner, u, lab, f"https://github.com/Legacy-{i}/Fork.git/")] = \
            f"https://github.com/legacy-{i}/fork"
    u = add_user(owner)
    # terminal sessions may share a URL with an active one
    old = legacy_session(owner, u, lab, "git@github.com:legacy-0/fork.git")
    owner.execute('UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (old,))
    bad = [legacy_session(owner, add_user(owner), lab, url)
           for url in ("https://gitlab.com/a/b", "", "https://github.com/a/b?x=1")]
    notices = []
    before = digests(owner, ("LabSession",))
    A.apply(dsn, sql_root=sql_root)
    assert digests(owner, ("LabSession",)) == before  # nothing rewritten, nothing dropped
    got = dict(owner.execute('SELECT "sessionId", "repoUrl" FROM "GitHubRepoMapping"').fetchall())
    for sid, url in good.items():
        assert got[sid] == url
    assert got[old] == "https://github.com/legacy-0/fork"
    unmapped = owner.execute("SELECT session_id, reason FROM list_unmapped_lab_sessions()").fetchall()
    assert {s for s, _ in unmapped} == set(bad)
    assert {r for _, r in unmapped} == {"unparseable fork URL"}
    # the procedure reports them in NOTICE lines, and can be run again (resumable)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute("CALL backfill_github_repo_mapping(5, 100)")
    conn.close()
    assert any("3 sessions left unmapped" in n for n in notices)
    for sid in bad:
        assert any(str(sid) in n for n in notices)
    assert owner.execute('SELECT count(*) FROM "GitHubRepoMapping"').fetchone()[0] == len(got)


def test_backfill_preflight_refuses_shared_active_url(db, sql_root):
    dsn = db.dsn("owner")
    A.rollback(dsn, to=_below_the_repo_mapping(dsn), sql_root=sql_root)
    owner = db.connect("owner")
    lab = add_lab(owner)
    a = legacy_session(owner, add_user(owner), lab, "https://github.com/dup/repo")
    b = legacy_session(owner, add_user(owner), lab, "git@github.com:DUP/repo.git")
    with pytest.raises(MigrationFailed) as exc:
        A.apply(dsn, sql_root=sql_root)
    assert exc.value.sqlstate == "FM001"
    assert str(a) in str(exc.value) and str(b) in str(exc.value)
    assert owner.execute("SELECT to_regclass('public.\"GitHubRepoMapping\"')").fetchone()[0] is None
    # resolve the duplicate, then the migration goes through
    owner.execute('UPDATE "LabSession" SET "status" = \'DEFERRED\' WHERE "id" = %s', (b,))
    owner.execute('UPDATE "LabSession" SET "status" = \'FAILED\' WHERE "id" = %s', (b,))
    A.apply(dsn, sql_root=sql_root)
    assert owner.execute('SELECT count(*) FROM "GitHubRepoMapping"').fetchone()[0] == 2


def _push_one(app, delivery, repo_id, url, n):
    return push(app, [commit(n)], repo_id=repo_id, url=url, delivery=delivery)


def test_a_url_bound_session_learns_its_repository_id_from_its_first_push(db, ctx):
    sid = uuid.uuid4()
    url = f"https://github.com/learn-{ctx['tag']}/fork"
    ctx["app"].execute(
        'INSERT INTO "LabSession" ("id", "userId", "labId", "userForkUrl") VALUES (%s, %s, %s, %s)',
        (sid, ctx["user"], ctx["lab"], url))
    assert [r[4] for r in _push_one(ctx["app"], f"l-{ctx['tag']}", 3101, url, 3101)] == [
        "recorded"]
    assert ctx["owner"].execute('SELECT "providerRepoId" FROM "GitHubRepoMapping" '
                                'WHERE "sessionId" = %s', (sid,)).fetchone()[0] == 3101


def test_a_renamed_repository_keeps_reaching_its_session(db, ctx):
    """Same repository id, a new URL no other active session holds: recorded in
    the session bound to the id."""
    s1 = create(ctx["app"], ctx, repo_id=3201)
    rows = _push_one(ctx["app"], f"r-{ctx['tag']}", 3201,
                     f"https://github.com/renamed-{ctx['tag']}/new-name", 3201)
    assert [r[4] for r in rows] == ["recorded"]
    assert ctx["owner"].execute('SELECT "sessionId" FROM "LabAttempt" WHERE id = %s',
                                (rows[0][1],)).fetchone()[0] == s1
