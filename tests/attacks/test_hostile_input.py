"""Hostile input: hypothesis-generated values for every argument of every API
function. Each call returns a valid result or raises the documented error;
never a crash (XX000, 08xxx, a dropped connection), never a partial write (the
digests are unchanged after an error), never a broken hash chain."""

from __future__ import annotations

import json

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests.attacks import NOW, commit, fork
from tests.attacks.conftest import WATCHED
from tests.helpers import digests, sha

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

SQL_FRAGMENTS = ["'; DROP TABLE \"LabAttempt\"; --", "\" OR 1=1 --", "$$; SELECT 1; $$",
                 "\\x00", "%s%s%n", "../../etc/passwd", "refs/heads/../../x", "\u202e",
                 "https://github.com/a/b?x=1", "git@github.com:a/b.git\n", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
                 "https://github.com/" + "a" * 40 + "/b"]
texts = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=60),
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF,
                          blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from(SQL_FRAGMENTS),
    st.integers(1, 200_000).map(lambda n: "x" * n),
    st.just("a\x00b"),          # NUL: cannot reach the server in a text parameter
)
ids64 = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1),
                  st.sampled_from([0, -1, 1, 2**63 - 1, -2**63, 1001, 1002]))
uuids = st.one_of(st.none(), st.uuids())
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=False, allow_infinity=False), texts.filter(
                          lambda t: t is not None and len(t) < 1000))
json_values = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=10), kids, max_size=5)),
    max_leaves=30)


class Raw(str):
    """A JSON text sent as is (too deep for Python's json module)."""


def deep(n: int) -> Raw:
    return Raw("[" * n + "]" * n)


commit_like = st.builds(
    lambda sid, name, files, ts, extra: {**commit(sid, name, files), "timestamp": ts, **extra},
    st.one_of(st.sampled_from([sha(7001), sha(7002, 64), "A" * 40, "z" * 40, ""]), texts),
    texts, st.lists(texts.filter(lambda t: t is not None and len(t) < 300), max_size=5),
    st.one_of(st.just("2026-02-10T10:00:00Z"), texts),
    st.dictionaries(st.sampled_from(["added", "author", "id", "removed"]), json_values,
                    max_size=2))
commits = st.one_of(
    st.lists(commit_like, max_size=4),
    json_values,
    st.just([commit(sha(7003))] * 2),                 # same id twice
    st.just([commit(sha(7004), files=[f"f{i}" for i in range(3001)])]),  # > 3000 paths
    st.just([commit(sha(7005 + i)) for i in range(2049)]),   # > 2048 commits
    st.just(deep(5000)), st.just(deep(200_000)),      # deep nesting
    st.just({"a": "\u0000"}),                         # NUL escape: jsonb refuses it
)

CRASH = ("XX", "08", "57P", "53", "58")


def attempt(world_db, role: str, query: str, params, allowed: set[str]):
    owner = world_db.connect("owner")
    before = digests(owner, WATCHED)
    conn = world_db.connect(role)
    try:
        rows = conn.execute(query, params).fetchall()
        ok = True
    except (psycopg.DataError, psycopg.ProgrammingError) as e:
        if e.sqlstate is None:          # refused by the client (NUL in a text value)
            ok = False
        else:
            assert e.sqlstate in allowed, f"undocumented error {e.sqlstate}: {e}"
            ok = False
    except psycopg.Error as e:
        assert e.sqlstate and not e.sqlstate.startswith(CRASH), f"crash: {e.sqlstate} {e}"
        assert e.sqlstate in allowed, f"undocumented error {e.sqlstate}: {e}"
        ok = False
    assert not conn.closed and conn.execute("SELECT 1").fetchone() == (1,)
    after = digests(owner, WATCHED)
    if not ok:
        assert after == before, "partial write after an error"
        rows = None
    assert owner.execute("SELECT count(*) FROM verify_lab_attempt_chain(NULL)"
                         ).fetchone()[0] == 0
    world_db.close()
    return rows


@SETTINGS
@given(url=texts)
def test_canonical_repo_url(world_db, url):
    rows = attempt(world_db, "app", "SELECT canonical_repo_url(%s)", (url,), set())
    if rows and rows[0][0] is not None:
        assert rows[0][0].startswith("https://github.com/") and rows[0][0] == rows[0][0].lower()


@SETTINGS
@given(user=uuids, lab=uuids, url=texts, repo=ids64, key=texts)
def test_create_lab_session(world_db, user, lab, url, repo, key):
    attempt(world_db, "app", "SELECT create_lab_session(%s, %s, %s, %s, %s)",
            (user, lab, url, repo, key), {"22023", "23503", "23505", "22P05"})


@SETTINGS
@given(user=st.sampled_from([1, 2, 3]), url=st.one_of(texts, st.sampled_from(
    [fork(1), fork(2), "https://github.com/new/repo"])), repo=ids64, key=texts)
def test_create_lab_session_known_ids(world_db, user, url, repo, key):
    from tests.helpers import ids
    attempt(world_db, "app", "SELECT create_lab_session(%s, %s, %s, %s, %s)",
            (ids.user(user), ids.lab(2), url, repo, key), {"22023", "23503", "23505"})


@SETTINGS
@given(repo=ids64, url=texts)
def test_resolve_lab_session(world_db, repo, url):
    attempt(world_db, "worker", "SELECT resolve_lab_session(%s, %s)", (repo, url), set())


@SETTINGS
@given(delivery=texts, repo=ids64, url=st.one_of(texts, st.just(fork(1))),
       ref=st.one_of(texts, st.just("refs/heads/main"), st.just("refs/heads/a..b")),
       head=st.one_of(texts, st.sampled_from([sha(7001), sha(7002, 64), "A" * 40])),
       pushed=st.one_of(st.none(), st.just(NOW), st.sampled_from(["infinity", "-infinity"])),
       payload=commits)
def test_record_push(world_db, delivery, repo, url, ref, head, pushed, payload):
    rows = attempt(world_db, "app",
                   "SELECT * FROM record_push(%s, %s, %s, %s, %s, %s::timestamptz, %s::jsonb)",
                   (delivery, repo, url, ref, head, pushed,
                    None if payload is None else str(payload) if isinstance(payload, Raw)
                    else json.dumps(payload)),
                   {"22023", "22P05", "54001", "22P02"})
    if rows:
        assert all(r[4] in ("recorded", "existing", "duplicate", "rejected") for r in rows)


@SETTINGS
@given(attempt_id=uuids)
def test_enqueue_verification_job(world_db, attempt_id):
    attempt(world_db, "app", "SELECT enqueue_verification_job(%s)", (attempt_id,),
            {"22023", "FL003"})


@SETTINGS
@given(worker=texts, lease=st.one_of(st.none(), texts, st.sampled_from(
    ["0", "-1 day", "1 second", "1 day 1 second", "100 years", "infinity", "1 hour"])))
def test_claim_verification_job(world_db, worker, lease):
    # every claim is rolled back: the shared world keeps its queue
    owner = world_db.connect("owner")
    before = digests(owner, WATCHED)
    conn = world_db.connect("worker", autocommit=False)
    try:
        conn.execute("SELECT * FROM claim_verification_job(%s, %s::interval)",
                     (worker, lease)).fetchall()
    except psycopg.Error as e:
        assert e.sqlstate is None or e.sqlstate in {"22023", "22007", "22008", "22015"}, \
            f"{e.sqlstate}: {e}"
    finally:
        conn.rollback()
    assert digests(owner, WATCHED) == before
    world_db.close()


@SETTINGS
@given(job=st.one_of(uuids, st.just("queued")), worker=texts,
       status=st.one_of(st.none(), st.sampled_from(["PASSED", "FAILED", "ERROR", "QUEUED",
                                                     "RUNNING", "passed", "'; --"])),
       code=st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)), logs=json_values)
def test_complete_verification_job(world_db, job, worker, status, code, logs):
    if job == "queued":
        job = world_db.connect("owner").execute(
            "SELECT id FROM \"VerificationJob\" WHERE status = 'QUEUED' LIMIT 1").fetchone()[0]
    attempt(world_db, "worker",
            "SELECT * FROM complete_verification_job(%s, %s, %s, %s, %s)",
            (job, worker, status, code, Jsonb(logs) if logs is not None else None),
            {"22023", "FQ001", "FQ002", "22P02", "22P05"})
