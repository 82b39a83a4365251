"""The independent recomputation of a large ledger, shared between processes.

The recomputation is Python, one row at a time (harness.ledger): on a large
ledger it is bound by one core. Chains do not cross sessions, so the sessions
are cut into ``n`` parts by ranges of ``sessionId`` and each part is walked by
its own process, all reading the same snapshot:

* the transaction's snapshot is exported at its top (``pg_export_snapshot``: a
  REPEATABLE READ transaction, ``_Snapshot``'s own or ``harness verify``'s,
  not from a savepoint);
* each helper process connects with the same connection parameters, imports
  the snapshot (``SET TRANSACTION SNAPSHOT``) and walks its part; this process
  walks the first part meanwhile;
* the parts' rows, sessions, breaks and heads are added up. A part whose helper
  failed (it could not connect, the snapshot was gone) is walked here after the
  others: a helper can cost time, never a row.

The parts cover every row exactly once whatever the values: the first takes
every ``sessionId`` below the first bound, the others the half-open ranges
``[bound i, bound i+1)`` of ``pg_catalog``'s own uuid order, and this process
also walks the rows whose ``sessionId`` is NULL (``NULL_PART``)
(the operator is named, so nothing planted in another schema can change which
rows a part reads). tests/attacks/test_tamper.py walks every attack's ledger
both ways and requires the same result.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from concurrent.futures import ProcessPoolExecutor

import psycopg
from psycopg import sql

from . import ledger

#: below this many rows (the planner's estimate) one process walks the ledger:
#: starting a helper costs about half a second, the walk 25 to 30 us a row (at
#: 100k rows on 2 cores: 3.0 s in one process, 2.05 s in two)
PARALLEL_MIN_ROWS = 100_000
#: at most this many processes share a ledger
MAX_PARTS = 4


#: rows a LabAttempt heap page holds, for a table no VACUUM or ANALYZE has counted
#: yet (about 21 for the rows the bench writes)
_ROWS_PER_PAGE = 20


def choose_parts(conn) -> int:
    """How many processes should walk the ledger of ``conn``: 1 on one core, below
    PARALLEL_MIN_ROWS, or outside a REPEATABLE READ transaction (another snapshot
    could not be shared); else one a core, at most MAX_PARTS. The row count is
    estimated as the planner does: the table's pages now, times the rows per page
    its statistics last counted (a table filled since then is not taken for empty)."""
    cores = os.cpu_count() or 1
    if cores < 2:
        return 1
    isolation, pages, density = conn.execute(
        "SELECT pg_catalog.current_setting('transaction_isolation'), "
        "pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int, "
        "CASE WHEN c.relpages > 0 AND c.reltuples >= 0 THEN c.reltuples / c.relpages END "
        "FROM pg_catalog.pg_class AS c "
        "WHERE c.oid = pg_catalog.to_regclass('public.\"LabAttempt\"')").fetchone() \
        or ("", 0, None)
    estimate = (pages or 0) * (density if density is not None else _ROWS_PER_PAGE)
    if isolation not in ("repeatable read", "serializable") or estimate < PARALLEL_MIN_ROWS:
        return 1
    return min(cores, MAX_PARTS)


def bounds(n: int) -> list[str]:
    """The n - 1 uuids that cut the uuid space into n equal ranges."""
    return [str(uuid.UUID(int=i * (1 << 128) // n)) for i in range(1, n)]


#: the rows no range takes (a superuser can drop the NOT NULL): walked by the caller
NULL_PART = 'a."sessionId" IS NULL'


def part_condition(i: int, n: int) -> str:
    """The SQL condition (on ``a``, a LabAttempt row) of part ``i`` of ``n``: a
    range of ``sessionId`` the index on (sessionId, chainSeq) reads directly
    (a condition it cannot use, as COALESCE(...) was, makes every part fetch
    every row: at 1M rows two parts took 31 s against one part's 25 s)."""
    cuts = bounds(n)
    below = 'a."sessionId" OPERATOR(pg_catalog.<) \'{}\'::pg_catalog.uuid'
    at_or_above = 'a."sessionId" OPERATOR(pg_catalog.>=) \'{}\'::pg_catalog.uuid'
    if n == 1:
        return 'a."sessionId" IS NOT NULL'
    if i == 0:
        return below.format(cuts[0])
    low = at_or_above.format(cuts[i - 1])
    return low if i == n - 1 else f"{low} AND {below.format(cuts[i])}"


def _conninfo(conn) -> str:
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    params["application_name"] = "harness ledger part"
    return psycopg.conninfo.make_conninfo("", **params)


def export_if_shared(conn, parts: int | None = None) -> str | None:
    """At the top of a REPEATABLE READ transaction (a snapshot cannot be exported
    from a savepoint): export its snapshot when ``parts`` (None: ``choose_parts``)
    processes will share the walk; None when one will."""
    if (choose_parts(conn) if parts is None else parts) <= 1:
        return None
    return conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]


def walk_part(conninfo: str, snapshot: str, condition: str, keep_heads: bool,
              batch: int) -> ledger.Recomputed:
    """In a helper process: walk one part of the ledger in the exported snapshot."""
    out = ledger.Recomputed()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        ledger._walk(ledger.stream_rows(conn, batch, condition), out, keep_heads)
        conn.execute("ROLLBACK")
    return out


def _add(out: ledger.Recomputed, part: ledger.Recomputed) -> None:
    out.rows += part.rows
    out.sessions += part.sessions
    out.breaks.extend(part.breaks)
    out.heads.update(part.heads)


def walk_all(conn, out: ledger.Recomputed, *, keep_heads: bool, batch: int,
             snapshot: str | None, parts: int | None = None) -> int:
    """Walk every chain of ``conn``'s snapshot into ``out``: in ``parts`` processes
    (None: ``choose_parts``) when ``snapshot`` (``export_if_shared``) is there to
    share, else in this one. Returns the number of parts walked."""
    n = (choose_parts(conn) if parts is None else max(1, int(parts))) if snapshot else 1
    if n == 1:
        ledger._walk(ledger.stream_rows(conn, batch), out, keep_heads)
        return 1
    conninfo = _conninfo(conn)
    # spawn, not fork: this process holds a connection and may run threads. A
    # helper that dies (killed, out of memory) breaks the pool: every result
    # still pending then raises (BrokenProcessPool) and is walked here, where a
    # multiprocessing.Pool would wait forever for the lost task.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n - 1, mp_context=context) as pool:
        pending = [pool.submit(walk_part, conninfo, snapshot, part_condition(i, n),
                               keep_heads, batch) for i in range(1, n)]
        ledger._walk(ledger.stream_rows(conn, batch, part_condition(0, n)), out, keep_heads)
        ledger._walk(ledger.stream_rows(conn, batch, NULL_PART), out, keep_heads)
        for i, future in enumerate(pending, 1):
            try:
                part = future.result()
            except Exception:  # noqa: BLE001 (the helper failed: walk its part here)
                part = ledger.Recomputed()
                ledger._walk(ledger.stream_rows(conn, batch, part_condition(i, n)), part,
                             keep_heads)
            _add(out, part)
    return n
