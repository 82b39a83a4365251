"""Hostile input: hypothesis-generated values for every argument of every API
function. Each call returns a valid result or raises the documented error;
never a crash (XX000, 08xxx, a dropped connection), never a partial write (the
digests are unchanged after an error), never a broken hash chain."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests.builders import AUTHOR, NOW, commit, fork_url, sha
from tests.attacks.conftest import WATCHED
from tests.helpers import digests

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

EVERY_CATEGORY = "".join(chr(c) for c in (
    0x41, 0x61, 0x1C5, 0x2B0, 0x5D0, 0x300, 0x903, 0x20DD, 0x30, 0x16EE, 0xB2, 0x5F,
    0x2D, 0x28, 0x29, 0xAB, 0xBB, 0x21, 0x2B, 0x24, 0x5E, 0xA6, 0x20, 0x2028, 0x2029,
    0x1, 0xAD, 0xE000, 0x378))   # Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No Pc Pd Ps Pe Pi Pf Po
#                                  Sm Sc Sk So Zs Zl Zp Cc Cf Co Cn
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
    st.builds(lambda: EVERY_CATEGORY),              # one character of every category
    st.builds(lambda: "https://github.com/a/" + EVERY_CATEGORY),
)
ids64 = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1),
                  st.sampled_from([0, -1, 1, 2**63 - 1, -2**63, 1001, 1002, 2**53 - 1, 2**53]))
uuids = st.one_of(st.none(), st.uuids(), st.sampled_from([
    "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]))
int32 = st.one_of(st.none(), st.integers(-2**31, 2**31 - 1), st.sampled_from(
    [-2**31, 2**31 - 1, -256, -255, 0, 255, 256]))
# timestamps: both ends of PostgreSQL's range, BC dates, the API's own bounds
TIMESTAMP_EXTREMES = [
    "4714-11-24 00:00:00+00 BC", "0001-01-01 00:00:00+00 BC", "0001-01-01 00:00:00+00",
    "2005-04-06 23:59:59.999+00", "2005-04-07 00:00:00+00", "9999-12-31 23:59:59.999+00",
    "294276-12-31 23:59:59.9999+00", "294276-12-31 23:59:59.999999+00",
    "infinity", "-infinity"]
timestamps = st.one_of(st.none(), st.just(NOW), st.sampled_from(TIMESTAMP_EXTREMES),
                       st.datetimes(timezones=st.just(timezone.utc)))
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.sampled_from([2**63 - 1, -2**63, 1e308, -1e-308, 5e-324]),
                      st.floats(allow_nan=False, allow_infinity=False), texts.filter(
                          lambda t: t is not None and len(t) < 1000 and "\x00" not in t),
                      st.just("\x00"))   # sent as the JSON escape \u0000: jsonb refuses it
json_values = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=10), kids, max_size=5)),
    max_leaves=30)


class Raw(str):
    """A JSON text sent as is (too deep for Python's json module)."""


def deep(n: int) -> Raw:
    return Raw("[" * n + "]" * n)


commit_like = st.builds(
    lambda sid, name, files, ts, extra: {
        **commit(sid, author={**AUTHOR, "name": name}, added=files), "timestamp": ts, **extra},
    st.one_of(st.sampled_from([sha(7001), sha(7002, 64), "A" * 40, "z" * 40, ""]), texts),
    texts, st.lists(texts.filter(lambda t: t is not None and len(t) < 300), max_size=5),
    st.one_of(st.just("2026-02-10T10:00:00Z"), texts, st.sampled_from(
        ["0000-01-01T00:00:00Z", "9999-12-31T23:59:60Z", "294276-12-31T23:59:59Z",
         "2026-02-30T10:00:00+23:59", "2026-02-10T10:00:00.1234567890Z"])),
    st.dictionaries(st.sampled_from(["added", "author", "id", "removed"]), json_values,
                    max_size=2))
commits = st.one_of(
    st.lists(commit_like, max_size=4),
    json_values,
    st.just([commit(sha(7003))] * 2),                 # same id twice
    st.just([commit(sha(7004), added=[f"f{i}" for i in range(3001)])]),  # > 3000 paths
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
    [fork_url(1), fork_url(2), "https://github.com/new/repo"])), repo=ids64, key=texts)
def test_create_lab_session_known_ids(world_db, user, url, repo, key):
    from tests.builders import ids
    attempt(world_db, "app", "SELECT create_lab_session(%s, %s, %s, %s, %s)",
            (ids.user(user), ids.lab(2), url, repo, key), {"22023", "23503", "23505"})


@SETTINGS
@given(repo=ids64, url=texts)
def test_resolve_lab_session(world_db, repo, url):
    attempt(world_db, "worker", "SELECT resolve_lab_session(%s, %s)", (repo, url), set())


@SETTINGS
@given(delivery=texts, repo=ids64, url=st.one_of(texts, st.just(fork_url(1))),
       ref=st.one_of(texts, st.just("refs/heads/main"), st.just("refs/heads/a..b")),
       head=st.one_of(texts, st.sampled_from([sha(7001), sha(7002, 64), "A" * 40])),
       pushed=timestamps,
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
@given(attempt_id=st.one_of(uuids, st.just("latest")))
def test_enqueue_verification_job(world_db, attempt_id):
    if attempt_id == "latest":
        attempt_id = world_db.connect("owner").execute(
            'SELECT id FROM "LabAttempt" ORDER BY "createdAt" DESC LIMIT 1').fetchone()[0]
    attempt(world_db, "app", "SELECT enqueue_verification_job(%s)", (attempt_id,),
            {"22023", "FL003"})


@SETTINGS
@given(worker=texts, lease=st.one_of(st.none(), texts, st.sampled_from(
    ["0", "-1 day", "1 second", "1 day 1 second", "100 years", "infinity", "1 hour",
     "178000000 years", "-178000000 years", "00:00:00.000001", "1 day 00:00:00.000001",
     "0.999999 seconds"])))
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
       code=int32, logs=st.one_of(json_values, st.just({"a": "\x00"}),
                                  st.builds(lambda: _nested(65)),
                                  st.builds(lambda: _nested(64))),
       token=uuids)
def test_complete_verification_job(world_db, job, worker, status, code, logs, token):
    if job == "queued":
        job = world_db.connect("owner").execute(
            "SELECT id FROM \"VerificationJob\" WHERE status = 'QUEUED' LIMIT 1").fetchone()[0]
    attempt(world_db, "worker",
            "SELECT * FROM complete_verification_job(%s, %s, %s, %s, %s, %s)",
            (job, worker, status, code, Jsonb(logs) if logs is not None else None, token),
            {"22023", "FQ001", "FQ002", "22P02", "22P05"})


# ----------------------------------------------------------- locale independence

def _category_samples() -> list[str]:
    """One character of every Unicode general category (BMP and beyond)."""
    import unicodedata
    seen: dict[str, str] = {}
    for cp in list(range(0x20, 0x3400)) + list(range(0xA000, 0x10000, 7)) + [
            0x1D400, 0x1F600, 0xE0001, 0xF0000, 0x10FFFD]:
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat not in seen and cat not in ("Cs",) and cp != 0:
            seen[cat] = ch
    return sorted(seen.values())


LOCALE_URLS = [
    "https://github.com/octo-cat/hello", "HTTPS://GITHUB.COM/ISSUE/INDEX.GIT",
    "git@github.com:Iris/Idle", "https://github.com/ISSUE/x",
    "https://github.com/\u212aate/repo",          # KELVIN SIGN
    "https://github.com/\u0130nci/repo",          # I WITH DOT ABOVE
    "https://github.com/\u0131nci/repo",          # DOTLESS I
    "https://github.com/\u017ftra/repo",          # LONG S
    "https://github.com/\ufb00/repo",             # LIGATURE FF
    "https://github.com/\uff21\uff22/repo",       # FULLWIDTH A B
    "https://github.com/\u03a3igma/repo", "https://github.com/a\u0301/repo",
    "https://github.com/\u01c5/repo", "https://github.com/o/r\u00a0",
    "https://github.com/o/r\u2028", "https://github.com/o/r\u0085",
    "https://github.com/o/r\u3000", "https://github.com/o/r\ufeff",
    "\u00a0https://github.com/o/r",
] + [f"https://github.com/a{c}b/n{c}m" for c in _category_samples()]
LOCALE_BRANCHES = ["main", "feature/x", "a\u00a0b", "a\u0085b", "a\u2003b", "\u0130",
                   "\u0131-branch", "a\u3000b", "na\u00efve", "a\u200bb", "a\u1680b",
                   "a\u202fb", "a\ufeffb"] + [f"b{c}x" for c in _category_samples()]


def _function_sql(path: str, name: str) -> str:
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / path).read_text()
    m = re.search(r"^CREATE (?:OR REPLACE )?FUNCTION " + name + r"\(.*?^\$\$;$", text,
                  re.M | re.S)
    return m.group(0)


def _answers(conn, schema: str, collation: str | None = None):
    coll = "" if collation is None else f' COLLATE "{collation}"'
    return conn.execute(
        f"SELECT (SELECT array_agg({schema}.canonical_repo_url(u{coll}) ORDER BY n) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS t (u, n)), "
        f"(SELECT array_agg({schema}.git_branch_name_valid(b{coll}) ORDER BY n) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS t (b, n))",
        (LOCALE_URLS, LOCALE_BRANCHES)).fetchone()


def _locale_databases(cluster, version: int, prefix: str) -> list[tuple[str, str]]:
    """(label, database) for every locale this server can create a database with,
    among C, C.UTF-8 (libc), the builtin provider (17+) and ICU."""
    import psycopg.errors
    wanted = [("C", "LOCALE 'C'"), ("libc C.utf8", "LOCALE 'C.utf8'")]
    if version >= 17:
        wanted.append(("builtin C.UTF-8", "LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8' "
                                          "LOCALE 'C'"))
    if version >= 18:
        wanted.append(("builtin PG_UNICODE_FAST", "LOCALE_PROVIDER builtin BUILTIN_LOCALE "
                                                  "'PG_UNICODE_FAST' LOCALE 'C'"))
    for icu in ("en-US", "tr-TR", "und"):
        wanted.append((f"icu {icu}", f"LOCALE_PROVIDER icu ICU_LOCALE '{icu}' LOCALE 'C'"))
    out = []
    with cluster.connect() as su:
        for i, (label, spec) in enumerate(wanted):
            name = f"{prefix}_{i}"
            su.execute(f'DROP DATABASE IF EXISTS "{name}"')
            try:
                su.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' {spec}")
            except psycopg.errors.FeatureNotSupported:
                continue        # this build has no ICU
            out.append((label, name))
    return out


def _install(conn):
    conn.execute("CREATE SCHEMA old; CREATE SCHEMA cur")
    for schema, files in (("old", ("tests/data/locale_dependent_text_rules.sql",) * 2),
                          ("cur", ("sql/migrations/V0014__github_repo_mapping.sql",
                                   "sql/migrations/V0019__push_and_queue_api.sql"))):
        conn.execute(f"SET search_path = {schema}")
        conn.execute(_function_sql(files[0], "canonical_repo_url"))
        conn.execute(_function_sql(files[1], "git_branch_name_valid"))
    conn.execute("RESET search_path")


def test_canonicalization_does_not_depend_on_the_locale(pg_cluster, pg_version):
    """canonical_repo_url and git_branch_name_valid give the same answers in
    databases created with C, C.UTF-8, the builtin provider and ICU locales (en-US,
    tr-TR), and under every collation those databases offer, for URLs and
    branches holding a character of every Unicode category, the Kelvin sign and
    the Turkish dotted/dotless i. The pre-release chain's function (tests/data), run
    beside it, does differ:
    the corpus reaches the locale-dependent cases. A server build without ICU
    (the embedded 18, pgserver's 16) proves the ICU cases on the Debian
    PostgreSQL 15 build, which has ICU; without any ICU build the test fails."""
    from harness import servers
    clusters = [(pg_cluster, pg_version)]
    dbs = [(pg_cluster, *d) for d in _locale_databases(pg_cluster, pg_version, "t_loc")]
    extra = None
    if not any(label.startswith("icu") for _c, label, _n in dbs):
        extra = servers.start_throwaway(15)
        clusters.append((extra, 15))
        dbs += [(extra, *d) for d in _locale_databases(extra, 15, "t_loc15")
                if d[0].startswith("icu")]
    try:
        assert any(label.startswith("icu") for _c, label, _n in dbs), "no ICU build found"
        assert {"C", "libc C.utf8"} <= {label for _c, label, _n in dbs}
        results, old_results = {}, {}
        for cluster, label, name in dbs:
            with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as conn:
                _install(conn)
                results[label] = _answers(conn, "cur")
                old_results[label] = _answers(conn, "old")
                colls = [r[0] for r in conn.execute(
                    "SELECT collname FROM pg_collation WHERE collencoding IN (-1, "
                    "pg_char_to_encoding('UTF8')) AND (collprovider <> 'i' OR collname ~ "
                    "'^(und|tr|tr-TR|az|lt|el|de|en-US|nl|ja)-x-icu$') ORDER BY 1")]
                for coll in colls:
                    results[f"{label} / COLLATE {coll}"] = _answers(conn, "cur", coll)
        reference = results["C"]
        differing = sorted(k for k, v in results.items() if v != reference)
        assert not differing, f"answers depend on the locale: {differing}"
        assert reference[0] == old_results["C"][0]   # the C answers of the pre-release function are kept
        assert any(v[0] != old_results["C"][0] for v in old_results.values()), \
            "the corpus no longer reaches a locale-dependent answer of the pre-release function"
        assert sum(u is not None for u in reference[0]) >= 4
    finally:
        for cluster, _label, name in dbs:
            with cluster.connect() as su:
                su.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if extra is not None:
            extra.destroy()


# ------------------------------------------- values a backup could not carry

LATE_TS = "294276-12-31 23:59:59.9999+00"     # rounds to year 294277 in timestamp(3)
BACKUP_BREAKERS = {
    # name: (role, statement, params, SQLSTATE, what the message must name)
    "push-after-year-294276": ("app", "push", {"pushed": LATE_TS}, "22023", "p_pushed_at"),
    "push-bc": ("app", "push", {"pushed": "2026-02-10 10:00:00+00 BC"}, "22023",
                "p_pushed_at"),
    "push-before-git": ("app", "push", {"pushed": "2005-04-06 23:59:59.999+00"}, "22023",
                        "p_pushed_at"),
    "push-in-two-days": ("app", "push", {"pushed": "in-two-days"}, "22023", "p_pushed_at"),
    "push-repo-id-2^53": ("app", "push", {"repo": 2**53}, "22023", "p_provider_repo_id"),
    "push-repo-id-bigint-max": ("app", "push", {"repo": 2**63 - 1}, "22023",
                                "p_provider_repo_id"),
    "push-commit-month-13": ("app", "push", {"ts": "2026-13-01T00:00:00Z"}, "22023",
                             ".timestamp"),
    "push-path-4097": ("app", "push", {"path": "p" * 4097}, "22023", ".added"),
    "create-repo-id-2^53": ("app", "create", {"repo": 2**53}, "22023", "p_provider_repo_id"),
    "complete-exit-256": ("worker", "complete", {"code": 256}, "22023", "p_exit_code"),
    "complete-exit-int-min": ("worker", "complete", {"code": -2**31}, "22023", "p_exit_code"),
    "complete-logs-65-deep": ("worker", "complete", {"logs": 65}, "22023", "p_logs"),
    "app-audit-after-year-294276": ("app", 'INSERT INTO "AuditLog" (id, action, "actorId", '
                                    '"createdAt") VALUES (gen_random_uuid(), \'X\', \'x\', %s)',
                                    ("294276-12-31 23:59:59.9999",), "23514", "createdAt"),
    "app-audit-bc": ("app", 'INSERT INTO "AuditLog" (id, action, "actorId", "createdAt") '
                     "VALUES (gen_random_uuid(), 'X', 'x', '0044-03-15 BC')", (), "23514",
                     "createdAt"),
    "app-session-start-after-year-294276": (
        "app", 'INSERT INTO "LabSession" (id, "userId", "labId", "userForkUrl", "startedAt") '
        "VALUES (gen_random_uuid(), %s, %s, 'https://github.com/late/start', %s)",
        "users", "23514", "startedAt"),
    "app-user-updated-after-year-294276": (
        "app", 'UPDATE "User" SET "updatedAt" = %s WHERE id = %s', "user1", "23514",
        "updatedAt"),
    "app-session-expiry-bc": (
        "app", 'INSERT INTO "Session" (id, "sessionToken", "userId", expires) VALUES '
        "('bc-session', 'bc-token', %s, '0001-01-01 BC')", "user1-only", "23514", "expires"),
    "app-last-activity-after-year-294276": (
        "app", 'UPDATE "LabSession" SET "lastActivityAt" = %s WHERE id = %s', "s2", "23514",
        "lastActivityAt"),
}


def _nested(depth: int) -> dict:
    v: dict = {"leaf": 1}
    for _ in range(depth - 1):
        v = {"n": v}
    return v


@pytest.mark.parametrize("name", list(BACKUP_BREAKERS))
def test_values_a_backup_could_not_carry_are_refused(world_db, snapshot, name):
    """Each value would be stored so that pg_dump writes it and pg_restore cannot
    read it back, or so that the push ledger hashes it like another value, or is
    beyond what the application can send: refused, naming the field; nothing
    written."""
    from tests.builders import ids
    from tests.helpers import raises_sqlstate
    role, stmt, params, code, field = BACKUP_BREAKERS[name]
    w = world_db.world
    conn = world_db.connect(role)
    with raises_sqlstate(code) as e:
        if stmt == "push":
            c = commit(sha(7201), added=[params.get("path", "src/a.py")])
            c["timestamp"] = params.get("ts", c["timestamp"])
            pushed = params.get("pushed", NOW)
            if pushed == "in-two-days":
                pushed = datetime.now(timezone.utc) + timedelta(days=2)
            conn.execute("SELECT * FROM record_push(%s, %s, %s, %s, %s, %s::timestamptz, %s)",
                         (f"d-bounds-{list(BACKUP_BREAKERS).index(name)}",
                          params.get("repo", 1002), fork_url(2), "refs/heads/main",
                          sha(7201), pushed, Jsonb([c])))
        elif stmt == "create":
            conn.execute("SELECT create_lab_session(%s, %s, %s, %s, %s)",
                         (ids.user(3), ids.lab(2), "https://github.com/b/bounds",
                          params["repo"], f"k-{name}"))
        elif stmt == "complete":
            job = world_db.connect("owner").execute(
                "SELECT id FROM \"VerificationJob\" WHERE status = 'QUEUED' LIMIT 1"
            ).fetchone()[0]
            conn.execute("SELECT * FROM complete_verification_job(%s, 'w', 'FAILED', %s, %s)",
                         (job, params.get("code", 1),
                          Jsonb(_nested(params["logs"]) if "logs" in params else {})))
        elif params == "users":
            conn.execute(stmt, (ids.user(3), ids.lab(2), "294276-12-31 23:59:59.9999"))
        elif params == "user1":
            conn.execute(stmt, ("294276-12-31 23:59:59.9999", ids.user(1)))
        elif params == "user1-only":
            conn.execute(stmt, (ids.user(1),))
        elif params == "s2":
            conn.execute(stmt, ("294276-12-31 23:59:59.9999", w["s2"]))
        else:
            conn.execute(stmt, params)
    assert field in e.value.diag.message_primary, str(e.value)
