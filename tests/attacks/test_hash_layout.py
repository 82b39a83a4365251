"""The row-hash layout (version 1) is injective over every value "LabAttempt" admits.

The layout is documented in the header of the ledger guards file and written in
Python by ``harness.ledger``. ``to_char`` spells a BC year like the AD one and
both infinities as NULL, so the columns are held (CHECKs) to the values the
layout spells in exactly one way, and ``harness verify`` refuses a stored row
outside them. Property tests draw rows from each hashed column's whole type
(including values the CHECKs refuse) and prove: the CHECKs and Python agree on
the domain; inside it the database's ``lab_attempt_row_hash`` and Python give
the same hash; and the layout bytes decode back to the row (injective).

Bounded for the suite: HARNESS_FUZZ_EXAMPLES examples per test (default 40).
A long run: ``HARNESS_FUZZ_EXAMPLES=2000 pytest -n 0 --timeout 0 tests/attacks/test_hash_layout.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from harness import ledger
from tests.builders import commit, push, seed_world, sha
from tests.helpers import digests, raises_sqlstate
from tests.test_verify_fuzz import run_cli

EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 60,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

COLUMNS = ('"id", "sessionId", "commitSha", "deliveryId", "branch", "authorName", '
           '"authorEmail", "authorLogin", "changedFiles", "pushedAt", "createdAt", '
           '"chainSeq", "prevHash", "rowHash"')

# ----------------------------------------------------------------- strategies

text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               min_size=1, max_size=30)
# one character spelled two ways, bidi and control characters, multi-byte lengths
tricky_text = st.sampled_from(["é", "e\u0301", "\u202e", "-", ",", "1:a,", "-,", "ß", "😀",
                               "\u00a0", "0:,"])
some_text = text | tricky_text | st.lists(tricky_text, min_size=1, max_size=4).map("".join)
hex_sha = st.text("0123456789abcdef", min_size=40, max_size=40) \
    | st.text("0123456789abcdef", min_size=64, max_size=64)
in_range = st.datetimes(min_value=dt.datetime(1, 1, 1),
                       max_value=dt.datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda d: d.isoformat(sep=" ", timespec="microseconds"))


def mostly(admitted, edges):
    """``admitted`` four times in five, else ``edges`` (so most rows get in)."""
    return st.integers(0, 4).flatmap(lambda n: edges if n == 4 else admitted)


timestamps = mostly(
    in_range,
    st.sampled_from(["infinity", "-infinity", "2026-02-10 10:00:00 BC",
                     "0001-01-01 00:00:00 BC", "0044-03-15 12:00:00.5 BC",
                     "10000-01-01 00:00:00", "9999-12-31 23:59:59.9996",
                     "0001-01-01 00:00:00", "9999-12-31 23:59:59.999",
                     "2026-02-10 10:00:00.0005"]))
element = some_text | st.sampled_from(["", 1, 1.5, None, True, ["a"], {"a": "b"}])
files = st.lists(some_text, max_size=4) | st.lists(element, max_size=3)
admitted_files = st.fixed_dictionaries({"added": st.lists(some_text, max_size=4),
                                        "modified": st.lists(some_text, max_size=4),
                                        "removed": st.lists(some_text, max_size=4)})
changed_files = mostly(admitted_files, st.one_of(
    st.fixed_dictionaries({"added": files, "modified": files, "removed": files},
                          optional={"extra": st.just([]), "x": st.none()}),
    st.dictionaries(st.sampled_from(["added", "modified", "removed"]),
                    files | st.none() | st.just("a"), max_size=3),
    st.sampled_from([[], "added", None, 1]),
))
HASHED = ["id", "sessionId", "commitSha", "deliveryId", "branch", "authorName",
          "authorEmail", "authorLogin", "changedFiles", "pushedAt", "createdAt", "prevHash"]
rows = st.fixed_dictionaries({
    "id": st.uuids().map(str), "sessionId": st.uuids().map(str), "commitSha": hex_sha,
    "deliveryId": some_text, "branch": some_text, "authorName": some_text,
    "authorEmail": st.none() | st.just("") | some_text,
    "authorLogin": st.none() | st.just("") | some_text,
    "changedFiles": changed_files, "pushedAt": timestamps, "createdAt": timestamps,
    "prevHash": st.binary(min_size=32, max_size=32) | st.just(bytes(32)),
})


# ----------------------------------------------------------------- decoding the layout


def _netstrings(raw: bytes) -> list[str | None]:
    out, i = [], 0
    while i < len(raw):
        if raw[i:i + 2] == b"-,":
            out.append(None)
            i += 2
            continue
        m = re.match(rb"(0|[1-9][0-9]*):", raw[i:])
        assert m, raw[i:i + 20]
        n, start = int(m.group(1)), i + m.end()
        assert raw[start + n:start + n + 1] == b","
        out.append(raw[start:start + n].decode("utf-8"))
        i = start + n + 1
    return out


def decode(raw: bytes) -> dict:
    """The row values the layout bytes stand for (the inverse of layout_bytes)."""
    f = _netstrings(raw)
    assert f[0] == ledger.LAYOUT and f[-1] == "end"
    out = {"prevHash": bytes.fromhex(f[1]), "id": f[2], "sessionId": f[3],
           "commitSha": f[4], "deliveryId": f[5], "branch": f[6], "authorName": f[7],
           "authorEmail": f[8], "authorLogin": f[9], "changedFiles": {}}
    i = 10
    for key in ledger.FILE_LISTS:
        n = int(f[i])
        out["changedFiles"][key] = f[i + 1:i + 1 + n]
        i += 1 + n
    out["pushedAt"], out["createdAt"] = f[i], f[i + 1]
    assert i + 3 == len(f)
    return out


def _instant(text: str) -> tuple:
    """A timestamp(3) text (database or layout form) as (y, mo, d, h, mi, s, ms)."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?Z?", text)
    assert m, text
    *head, frac = m.groups()
    return (*map(int, head), int((frac or "0").ljust(3, "0")))


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def layout_db(pg_cluster, tmpl_full):
    """A database with a temporary twin of "LabAttempt" carrying its CHECKs, where
    generated rows meet the constraints without the ledger's triggers or keys."""
    from conftest import _fresh_db
    with _fresh_db(pg_cluster, tmpl_full, "t_layout") as db:
        conn = db.connect("owner")
        conn.execute('CREATE TEMP TABLE la (LIKE public."LabAttempt" INCLUDING CONSTRAINTS '
                     'INCLUDING DEFAULTS)')
        yield conn


def _store(conn, row: dict):
    """The row as the twin table stores it, read back the way verify reads the
    ledger, plus the database's hash of it; None when a CHECK refuses it."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            conn.execute(
                f"INSERT INTO la ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s::timestamp(3), %s::timestamp(3), 1, %s, %s)",
                (row["id"], row["sessionId"], row["commitSha"], row["deliveryId"],
                 row["branch"], row["authorName"], row["authorEmail"], row["authorLogin"],
                 Jsonb(row["changedFiles"]), row["pushedAt"], row["createdAt"],
                 row["prevHash"], bytes(32)))
            got = conn.execute(
                'SELECT a."id"::text, a."sessionId"::text, a."commitSha", a."deliveryId", '
                'a."branch", a."authorName", a."authorEmail", a."authorLogin", '
                'a."changedFiles"::text, a."pushedAt"::text, a."createdAt"::text, '
                'a."chainSeq", a."prevHash", a."rowHash", '
                'lab_attempt_row_hash(jsonb_populate_record(NULL::public."LabAttempt", '
                'to_jsonb(a))) FROM la AS a').fetchone()
    except psycopg.errors.CheckViolation as e:
        event(f"refused by {e.diag.constraint_name}")
        return None
    stored = ledger.Row(*got[:8], json.loads(got[8]), *got[9:11], chain_seq=got[11],
                        prev_hash=bytes(got[12]), row_hash=bytes(got[13]))
    return stored, bytes(got[14])


def _python_admits(row: dict) -> bool:
    r = ledger.Row(row["id"], row["sessionId"], row["commitSha"], row["deliveryId"],
                   row["branch"], row["authorName"], row["authorEmail"], row["authorLogin"],
                   row["changedFiles"], row["pushedAt"], row["createdAt"], 1,
                   row["prevHash"], bytes(32))
    return ledger.outside_layout(r) is None


# ----------------------------------------------------------------- properties


BASE = {"id": str(uuid.UUID(int=1)), "sessionId": str(uuid.UUID(int=2)), "commitSha": "a" * 40,
        "deliveryId": "d", "branch": "main", "authorName": "Ada", "authorEmail": None,
        "authorLogin": "", "changedFiles": {"added": ["1"], "modified": [], "removed": []},
        "pushedAt": "2026-02-10 10:00:00", "createdAt": "2026-02-10 10:00:00.5",
        "prevHash": bytes(32)}
#: each value the old CHECKs let through although the layout spells it like another
EDGES = [{"changedFiles": {"added": [["a"]], "modified": [], "removed": []}},
         {"changedFiles": {"added": [1], "modified": [], "removed": []}},
         {"changedFiles": {"added": [], "modified": [], "removed": [], "x": []}},
         {"pushedAt": "2026-02-10 10:00:00 BC"}, {"createdAt": "infinity"},
         {"pushedAt": "-infinity"}, {"pushedAt": "12026-02-10 10:00:00"}]


@FUZZ
@given(row=rows)
@example(row=BASE)
@example(row={**BASE, **EDGES[0]})
@example(row={**BASE, **EDGES[1]})
@example(row={**BASE, **EDGES[2]})
@example(row={**BASE, **EDGES[3]})
@example(row={**BASE, **EDGES[4]})
@example(row={**BASE, **EDGES[5]})
@example(row={**BASE, **EDGES[6]})
def test_python_and_the_database_hash_every_admitted_row_alike(layout_db, row):
    stored = _store(layout_db, row)
    if stored is None:
        event("refused by a CHECK")
        assert not _python_admits({**row, "pushedAt": _db_text(layout_db, row["pushedAt"]),
                                   "createdAt": _db_text(layout_db, row["createdAt"])}), row
        return
    event("admitted")
    r, sql_hash = stored
    assert ledger.outside_layout(r) is None, r
    assert ledger.row_hash(r) == sql_hash


def _db_text(conn, ts: str) -> str | None:
    """The timestamp(3) text the database stores for ``ts`` (None: not a timestamp)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            return conn.execute("SELECT %s::timestamp(3)::text", (ts,)).fetchone()[0]
    except psycopg.errors.DataError:
        return None


@FUZZ
@given(row=rows)
def test_the_layout_of_an_admitted_row_decodes_back_to_it(layout_db, row):
    stored = _store(layout_db, row)
    if stored is None:
        event("refused by a CHECK")
        return
    r, _ = stored
    back = decode(ledger.layout_bytes(r))
    assert back["prevHash"] == r.prev_hash
    assert [back[k] for k in ("id", "sessionId", "commitSha", "deliveryId", "branch",
                              "authorName", "authorEmail", "authorLogin")] == \
        [r.id, r.session_id, r.commit_sha, r.delivery_id, r.branch, r.author_name,
         r.author_email, r.author_login]
    assert back["changedFiles"] == r.changed_files
    assert _instant(back["pushedAt"]) == _instant(r.pushed_at)
    assert _instant(back["createdAt"]) == _instant(r.created_at)
    assert str(uuid.UUID(back["id"])) == back["id"]


@FUZZ
@given(row=rows, other=rows, column=st.sampled_from(HASHED))
def test_admitted_rows_differing_in_one_column_hash_differently(layout_db, row, other,
                                                               column):
    a, b = _store(layout_db, row), _store(layout_db, {**row, column: other[column]})
    if a is None or b is None:
        event("refused by a CHECK")
        return
    (ra, ha), (rb, hb) = a, b
    same = ra == rb
    event("same value" if same else f"differs in {column}")
    assert (ha == hb) == same
    assert (ledger.row_hash(ra) == ledger.row_hash(rb)) == same


# ----------------------------------------------------------------- the attack


_ENABLE = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "D": "DISABLE"}


def unguarded_update(su, statement: str, params, table: str = "LabAttempt") -> None:
    """``statement`` as a superuser with every user trigger of ``table`` disabled, then
    each put back in the mode it had, in one transaction."""
    with su.transaction():
        modes = su.execute(
            "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = %s::regclass "
            "AND NOT tgisinternal", (f'public."{table}"',)).fetchall()
        su.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
        su.execute(statement, params)
        for name, mode in modes:
            su.execute(f'ALTER TABLE "{table}" {_ENABLE[mode]} TRIGGER "{name}"')


def test_the_database_refuses_every_value_the_layout_spells_like_another(db):
    """A BC year, 'infinity', '-infinity', a fifth year digit: 23514 as the owner
    (the only role that may write the table), nothing changed."""
    world = seed_world(db)
    owner, su = db.connect("owner"), db.connect("superuser")
    before = digests(owner)
    for column in ("pushedAt", "createdAt"):
        for value in ("2026-02-10 10:00:00 BC", "infinity", "-infinity",
                      "10000-01-01 00:00:00"):
            with raises_sqlstate("23514"):
                unguarded_update(su, f'UPDATE "LabAttempt" SET "{column}" = %s::timestamp(3) '
                                 'WHERE "sessionId" = %s', (value, world["s1"]))
    assert digests(owner) == before


#: a value the old layout spells exactly as the original, the CHECK that refuses it,
#: the rewrite, and what verify says
TWINS = {
    "bc_year": ("LabAttempt_pushedAt_check",
                '"pushedAt" = ("pushedAt"::text || \' BC\')::timestamp(3)',
                r"pushedAt '.* BC' has no place in the layout"),
    "number_for_string": ("LabAttempt_changedFiles_check",
                          '"changedFiles" = jsonb_set("changedFiles", \'{added,0}\', \'1\')',
                          "changedFiles.added outside the layout: non-empty strings expected"),
    "array_for_string": ("LabAttempt_changedFiles_check",
                         '"changedFiles" = jsonb_set("changedFiles", \'{added,1}\', '
                         '\'["a"]\')',
                         "changedFiles.added outside the layout: non-empty strings expected"),
    "extra_key": ("LabAttempt_changedFiles_check",
                  '"changedFiles" = "changedFiles" || \'{"approved": ["all"]}\'',
                  "changedFiles outside the layout: exactly added, modified, removed"),
}


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_a_twin_with_the_same_old_hash_fails_verify_checkpoint(db, tmp_path, twin):
    """A superuser drops the CHECK, disables the triggers and rewrites a checkpointed
    row to a value the old layout spells alike (a BC year, the number 1 for the path
    "1", the array ["a"] for the path '["a"]', an extra key): the stored hash still
    matches the database's own function, yet verify --checkpoint fails on the row."""
    constraint, assignment, finding = TWINS[twin]
    world = seed_world(db)
    push(db.connect("app"), [commit(sha(9), added=["1", '["a"]'])], n=2, delivery="d-twin")
    owner, su = db.connect("owner"), db.connect("superuser")
    path = tmp_path / "cp.json"
    path.write_text(json.dumps(ledger.take_checkpoint(owner)))
    code, out = run_cli("verify", "--target", db.dsn(), "--no-reference",
                        "--checkpoint", str(path))
    assert code == 0, out
    row_id = su.execute('SELECT id FROM "LabAttempt" WHERE "commitSha" = %s',
                        (sha(9),)).fetchone()[0]
    statement = f'UPDATE "LabAttempt" SET {assignment} WHERE id = %s'
    with raises_sqlstate("23514"):     # triggers off or not, the CHECK refuses it
        unguarded_update(su, statement, (row_id,))
    su.execute(f'ALTER TABLE "LabAttempt" DROP CONSTRAINT "{constraint}"')
    unguarded_update(su, statement, (row_id,))
    # the old layout spells the forged row exactly as the original: same hash
    assert su.execute('SELECT lab_attempt_row_hash(a) = a."rowHash" '
                      'FROM "LabAttempt" AS a WHERE id = %s', (row_id,)).fetchone()[0]
    assert su.execute("SELECT count(*) FROM verify_lab_attempt_chain(NULL)").fetchone()[0] == 0
    code, out = run_cli("verify", "--target", db.dsn(), "--no-reference",
                        "--checkpoint", str(path))
    assert code == 1, out
    assert out.splitlines()[-1].startswith("verify: FAILED"), out
    assert re.search(rf"{row_id}: {finding}", out), out
    assert str(world["s2"]) in out
