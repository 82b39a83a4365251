"""verify and checkpoint never crash: hypothesis-generated checkpoint files and hostile
row content end in a report or a one-line refusal with a documented exit code.

Bounded for the suite: HARNESS_FUZZ_EXAMPLES examples per test (default 40), no
deadline. A long fuzz run: ``HARNESS_FUZZ_EXAMPLES=2000 pytest -n 0 --timeout 0 tests/test_verify_fuzz.py``
(docs/security.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

from harness import ledger
from harness.cli import main as cli_main
from tests.builders import seed_world

EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 60,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def run_cli(*args) -> tuple[int, str]:
    """``harness ARGS`` in this process: its exit code and everything it printed;
    any exception escaping the CLI fails the test with its traceback."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli_main(list(args))
    text = out.getvalue()
    assert "Traceback" not in text, text
    return code, text


# ----------------------------------------------------------------- checkpoint files

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12),
                                                                inner, max_size=5),
    max_leaves=20)


@pytest.fixture(scope="module")
def valid_checkpoint() -> dict:
    heads = [{"sessionId": f"00000000-0000-4000-8000-00000000000{i}", "chainSeq": i,
              "rowHash": f"{i:x}" * 64} for i in (1, 2, 3)]
    return {"format": ledger.CHECKPOINT_FORMAT, "takenAt": "2026-12-01T00:00:00+00:00",
            "rows": 6, "sessionCount": 3, "root": ledger.root_of(heads),
            "previousRoot": None, "sessions": heads}


def _mutations(valid: dict):
    """Documents near a valid one: a field replaced, removed, or a head's field replaced."""
    top = st.builds(lambda k, v: {**valid, k: v}, st.sampled_from(sorted(valid)), json_values)
    dropped = st.builds(lambda k: {k2: v for k2, v in valid.items() if k2 != k},
                        st.sampled_from(sorted(valid)))
    head = st.builds(
        lambda i, k, v: {**valid, "sessions": [
            {**e, k: v} if n == i else e for n, e in enumerate(valid["sessions"])]},
        st.integers(0, 2), st.sampled_from(["sessionId", "chainSeq", "rowHash", "extra"]),
        json_values | st.integers(min_value=2**63 - 2, max_value=2**80)
        | st.text(alphabet="0123456789abcdefABCDEFxyz", min_size=63, max_size=65))
    return top | dropped | head


def _documents(valid: dict):
    as_json = (json_values | _mutations(valid)).map(
        lambda d: json.dumps(d).encode())
    raw = st.binary(max_size=300)
    tricky = st.sampled_from([b"", b"{", b"[" * 100000, b"\xff\xfe{}", b"NaN",
                              b'{"format": Infinity}', b"1e999999", b"9" * 5000,
                              json.dumps(valid).encode("utf-16")])
    return as_json | raw | tricky


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@FUZZ
@given(data=st.data())
def test_any_checkpoint_file_is_refused_with_exit_2_or_used(data, valid_checkpoint,
                                                           fuzz_dir):
    """`checkpoint --compare` (offline) with any bytes as the earlier or the later file:
    a one-line refusal naming what is wrong (exit 2), or the comparison (0/1)."""
    blob = data.draw(_documents(valid_checkpoint))
    good, bad = fuzz_dir / "good.json", fuzz_dir / "fuzzed.json"
    good.write_text(json.dumps(valid_checkpoint))
    bad.write_bytes(blob)
    for pair in ((bad, good), (good, bad)):
        code, text = run_cli("checkpoint", "--compare", *map(str, pair))
        assert code in (0, 1, 2), text
        if code == 2:
            assert text.startswith("harness: ") and str(bad) in text, text
            assert len(text) < 2000
    # verify reads the file before it connects: refused (2), or used and the
    # unreachable server reported (4)
    code, text = run_cli("verify", "--target", "postgresql://nobody@127.0.0.1:1/none",
                         "--no-reference", "--checkpoint", str(bad))
    assert code in (2, 4), text


def test_a_refusal_names_the_field(valid_checkpoint, tmp_path):
    cases = {
        "sessions[1].chainSeq: an integer from 1": ("sessions", 1, "chainSeq", "2"),
        "sessions[0].rowHash: 64 lowercase hex": ("sessions", 0, "rowHash", "AB" * 32),
        "sessions[2].sessionId: a lowercase UUID": ("sessions", 2, "sessionId", "x"),
        "field rows: an integer from 0 to 9223372036854775807": ("rows", None, None, 2**64),
        "field root: 64 lowercase hex": ("root", None, None, 7),
        "field sessionCount is 3 but sessions lists 2": ("sessions", None, None, "drop"),
    }
    for expected, (key, index, sub, value) in cases.items():
        doc = json.loads(json.dumps(valid_checkpoint))
        if value == "drop":
            doc["sessions"].pop()
        elif index is None:
            doc[key] = value
        else:
            doc[key][index][sub] = value
        path = tmp_path / "cp.json"
        path.write_text(json.dumps(doc))
        code, text = run_cli("checkpoint", "--compare", str(path), str(path))
        assert code == 2 and expected in text, text


def test_verify_and_checkpoint_refuse_a_bad_checkpoint_file_and_checkpoint_still_works(
        db, tmp_path):
    seed_world(db)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\x00garbage")
    code, text = run_cli("verify", "--target", db.dsn(), "--no-reference",
                         "--checkpoint", str(bad))
    assert code == 2 and "not UTF-8 text" in text, text
    code, text = run_cli("checkpoint", "--target", db.dsn(), "--previous", str(bad))
    assert code == 2 and str(bad) in text, text
    good = tmp_path / "good.json"
    code, text = run_cli("checkpoint", "--target", db.dsn(), "--out", str(good))
    assert code == 0, text
    code, text = run_cli("checkpoint", "--target", db.dsn(), "--previous", str(good),
                         "--no-record")
    assert code == 0 and "extends" in text, text
    code, text = run_cli("verify", "--target", db.dsn(), "--no-reference",
                         "--checkpoint", str(good))
    assert code == 0, text


# ----------------------------------------------------------------- hostile rows

_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                max_size=200)
_hostile_text = _text | st.sampled_from(["x" * 200000, "\\u0000", "\\x00", "\u202e\u2028",
                                         "'; DROP TABLE x; --", "%s %(x)s {0}"])
_json_text = json_values.map(json.dumps) | st.sampled_from([
    '{"added": [' + "9" * 5000 + "]}",          # a number too long for Python's int()
    "[" * 2000 + "]" * 2000,                    # deeper than Python's json recursion
    '{"added": "not a list", "modified": 7, "removed": {"a": null}}',
    '{"added": [null, 1.5e300, true, {"x": []}], "modified": [], "removed": []}',
    '"just a string"', "null", '{"added": ["\\u00e9\\ud83d\\ude00", "' + "a" * 100000 + '"]}',
])
_timestamp = st.datetimes().map(str) | st.sampled_from(
    ["infinity", "-infinity", "4713-01-01 00:00:00 BC", "294276-12-31 23:59:59.999"])

#: (table, column, SQL type, strategy), within each column's type
COLUMNS = [
    ("LabAttempt", "changedFiles", "jsonb", _json_text),
    ("LabAttempt", "branch", "text", _hostile_text),
    ("LabAttempt", "authorName", "text", _hostile_text),
    ("LabAttempt", "authorEmail", "text", st.none() | _hostile_text),
    ("LabAttempt", "deliveryId", "text", _hostile_text),
    ("LabAttempt", "commitSha", "text", _hostile_text),
    ("LabAttempt", "pushedAt", "timestamp(3)", _timestamp),
    ("LabAttempt", "chainSeq", "bigint", st.integers(-2**63, 2**63 - 1)),
    ("LabAttempt", "prevHash", "bytea", st.binary(max_size=64)),
    ("LabAttempt", "rowHash", "bytea", st.binary(max_size=64)),
    ("VerificationAttempt", "logs", "jsonb", _json_text),
    ("VerificationAttempt", "commitSha", "text", _hostile_text),
    ("VerificationAttempt", "createdAt", "timestamp(3)", _timestamp),
    ("VerificationJob", "errorMessage", "text", st.none() | _hostile_text),
    ("VerificationJob", "leaseOwner", "text", st.none() | _hostile_text),
    ("VerificationJob", "exitCode", "integer", st.none() | st.integers(-2**31, 2**31 - 1)),
    ("VerificationJob", "runCount", "integer", st.integers(-2**31, 2**31 - 1)),
    ("VerificationJob", "status", '"VerificationJobStatus"',
     st.sampled_from(["QUEUED", "RUNNING", "PASSED", "FAILED", "ERROR"])),
    ("VerificationJob", "completedAt", "timestamp(3)", st.none() | _timestamp),
]


@pytest.fixture
def hostile_db(db):
    """The seeded world with the CHECK constraints of the fuzzed tables dropped, so that
    any value of a column's type can be written (the guard triggers are disabled per
    write, as a superuser would), and each table's trigger modes to restore."""
    seed_world(db)
    su = db.connect("superuser")
    modes = {}
    for table in {t for t, *_ in COLUMNS}:
        for (con,) in su.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                                 "AND contype = 'c'", (f'"{table}"',)).fetchall():
            su.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(con)))
        modes[table] = su.execute("SELECT tgname, tgenabled::text FROM pg_trigger "
                                  "WHERE tgrelid = %s::regclass", (f'"{table}"',)).fetchall()
    return db, su, modes


_ENABLE = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER",
           "R": "ENABLE REPLICA TRIGGER", "D": "DISABLE TRIGGER"}


def _write(su, modes, table, column, typ, row_id, value) -> bool:
    """UPDATE one row's column with every trigger off (then each back in its mode);
    False when the column's type refuses the value."""
    try:
        with su.transaction():
            su.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER ALL").format(
                sql.Identifier(table)))
            su.execute(sql.SQL("UPDATE {} SET {} = %s::" + typ + " WHERE id = %s").format(
                sql.Identifier(table), sql.Identifier(column)), (value, row_id))
            for name, mode in modes[table]:
                su.execute(sql.SQL("ALTER TABLE {} " + _ENABLE[mode] + " {}").format(
                    sql.Identifier(table), sql.Identifier(name)))
        return True
    except (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded,
            psycopg.errors.StatementTooComplex):
        return False


@FUZZ
@given(data=st.data())
def test_hostile_row_content_ends_in_a_report(hostile_db, data):
    db, su, modes = hostile_db
    table, column, typ, values = data.draw(st.sampled_from(COLUMNS))
    value = data.draw(values)
    row_id, before = su.execute(sql.SQL("SELECT id, {}::text FROM {} ORDER BY id LIMIT 1").format(
        sql.Identifier(column), sql.Identifier(table))).fetchone()
    if not _write(su, modes, table, column, typ, row_id, value):
        event("refused by the column's type")
        return
    event(f"written: {table}.{column}")
    try:
        after = su.execute(sql.SQL("SELECT {}::text FROM {} WHERE id = %s").format(
            sql.Identifier(column), sql.Identifier(table)), (row_id,)).fetchone()[0]
        code, text = run_cli("verify", "--target", db.dsn(), "--no-reference")
        assert code in (0, 1), text
        assert re.search(r"^verify: (OK|FAILED)", text, re.M), text
        if table == "LabAttempt" and after != before:   # every column is in the hash
            assert code == 1 and "lab_attempt_chain_recomputed" in text.splitlines()[-1], text
        code, text = run_cli("verify", "--target", db.dsn(), "--no-reference", "--json")
        assert code in (0, 1)
        json.loads("\n".join(line for line in text.splitlines()    # the target is on stderr
                              if not line.startswith("harness: target ")))
    finally:
        assert _write(su, modes, table, column, typ, row_id, before)


@pytest.mark.parametrize("column, typ, value, finding", [
    ("changedFiles", "jsonb", '{"added": [' + "9" * 5000 + "]}",
     "changedFiles cannot be read: ValueError"),
    ("changedFiles", "jsonb", "[" * 2000 + "]" * 2000,
     "changedFiles cannot be read: RecursionError"),
    ("pushedAt", "timestamp(3)", "infinity", "has no place in the layout"),
    ("authorName", "text", "\u202e\x1b[2J" + "x" * 100000, "rowHash does not match"),
])
def test_ledger_values_python_cannot_read_are_findings(hostile_db, column, typ, value,
                                                      finding):
    db, su, modes = hostile_db
    row_id = su.execute('SELECT id FROM "LabAttempt" ORDER BY "sessionId", "chainSeq" '
                        "LIMIT 1").fetchone()[0]
    assert _write(su, modes, "LabAttempt", column, typ, row_id, value)
    code, text = run_cli("verify", "--target", db.dsn(), "--no-reference")
    assert code == 1, text
    assert text.splitlines()[-1].startswith("verify: FAILED"), text
    line = next(ln for ln in text.splitlines() if str(row_id) in ln and "recomputed" in ln
                or finding in ln)
    assert finding in line and len(line) < 1500 and "\x1b" not in text, line
