"""The recomputation of a large ledger shared between processes (harness.ledger_parts).

What sharing must never do: skip a row, read a row twice, read another snapshot
than the caller's, or lose a part when a helper fails. The attacks on the ledger
(tests/attacks/test_tamper.py) run every recomputation both in one process and
in three and require the same breaks and heads; these tests prove the parts'
cover, the snapshot and the fallback directly.
"""

from __future__ import annotations

import os
import uuid

import pytest
from psycopg import sql

from harness import ledger, ledger_parts
from harness import verify as V
from tests.builders import commit, push, seed_world, sha
from tests.helpers import assert_same_recomputation


def _edge_values(n: int) -> list[str | None]:
    values: list[str | None] = [None, str(uuid.UUID(int=0)), str(uuid.UUID(int=(1 << 128) - 1))]
    for cut in ledger_parts.bounds(n):
        at = uuid.UUID(cut).int
        values += [str(uuid.UUID(int=at + d)) for d in (-1, 0, 1)]
    return values + [str(uuid.uuid4()) for _ in range(20)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_the_parts_take_every_session_id_and_null_exactly_once(db, n):
    """The n ranges and the NULL part take every value exactly once."""
    conn = db.connect("owner")
    values = _edge_values(n)
    rows = sql.SQL(", ").join(
        sql.SQL("({}::uuid)").format(sql.Literal(v)) for v in values)
    taken: dict[str | None, list[int]] = {v: [] for v in values}
    conditions = [ledger_parts.part_condition(i, n) for i in range(n)] \
        + [ledger_parts.NULL_PART]
    for i, condition in enumerate(conditions):
        query = sql.SQL('SELECT a."sessionId"::text FROM (VALUES {}) AS a ("sessionId") '
                        'WHERE {}').format(rows, sql.SQL(condition))
        for (v,) in conn.execute(query):
            taken[v].append(i)
    assert {v: parts for v, parts in taken.items() if len(parts) != 1} == {}


def test_a_helper_reads_the_exported_snapshot_not_rows_committed_after_it(db):
    seed_world(db)
    owner, app = db.connect("owner"), db.connect("app")
    owner.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    snapshot = ledger_parts.export_if_shared(owner, parts=2)
    before = owner.execute('SELECT count(*) FROM "LabAttempt"').fetchone()[0]
    push(app, [commit(sha(50)), commit(sha(51))], n=2, delivery="d-after-the-snapshot")
    now = app.execute('SELECT count(*) FROM "LabAttempt"').fetchone()[0]
    part = ledger_parts.walk_part(db.dsn("owner"), snapshot, "true", False, 100)
    assert (part.rows, now) == (before, before + 2)
    assert part.breaks == []


def test_a_helper_that_cannot_connect_costs_time_not_rows(db, monkeypatch):
    seed_world(db)
    owner = db.connect("owner")
    one = ledger.recompute(owner, parts=1, keep_heads=True)
    assert one.rows > 0 and one.heads
    monkeypatch.setattr(ledger_parts, "_conninfo",
                        lambda conn: "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2")
    shared = ledger.recompute(owner, parts=3, keep_heads=True)
    assert shared.parts == 3
    assert_same_recomputation(shared, one)


def _die(*args):
    """A helper process that dies without a word (as one killed by the kernel)."""
    os._exit(3)


def test_a_helper_that_dies_costs_time_not_rows(db, monkeypatch):
    seed_world(db)
    owner = db.connect("owner")
    one = ledger.recompute(owner, parts=1, keep_heads=True)
    monkeypatch.setattr(ledger_parts, "walk_part", _die)
    shared = ledger.recompute(owner, parts=3, keep_heads=True)
    assert shared.parts == 3
    assert_same_recomputation(shared, one)


def test_verify_shares_a_large_ledgers_walk_and_still_names_an_edited_row(db, monkeypatch):
    world = seed_world(db)
    su = db.connect("superuser")
    su.execute('ALTER TABLE "LabAttempt" DISABLE TRIGGER USER')
    su.execute('UPDATE "LabAttempt" SET "authorName" = \'FORGED\' '
               'WHERE "sessionId" = %s AND "chainSeq" = 2', (world["s1"],))
    su.execute('ANALYZE "LabAttempt"')
    monkeypatch.setattr(ledger_parts, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(ledger_parts.os, "cpu_count", lambda: 2)
    report = V.run_checks(db.connect("readonly"), require_complete=False)
    check = report.by_name("lab_attempt_chain_recomputed")
    text = V.render_table(report)
    assert check.status == "fail", text
    assert f"{world['s1']}/2/" in text and "by 2 processes" in text, text


def test_a_small_ledger_is_walked_by_one_process(db):
    seed_world(db)
    owner = db.connect("owner")
    owner.execute('ANALYZE "LabAttempt"')
    assert ledger.recompute(owner).parts == 1
