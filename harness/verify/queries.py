"""The read-only queries every check is built from."""

from __future__ import annotations

from .report import MAX_ROWS, Check


def rows(conn, query: str, params=None) -> list[tuple]:
    """Every row of ``query``."""
    return conn.execute(query, params or ()).fetchall()


def exists(conn, rel: str) -> bool:
    """Whether table ``rel`` of schema public exists."""
    return conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                        (f'public."{rel}"',)).fetchone()[0]


def first_ids(conn, query: str, params=None) -> tuple[list[str], int]:
    """Run ``query`` (first column = an id/description); the first MAX_ROWS and the total."""
    found = rows(conn, f"SELECT q.*, count(*) OVER () FROM ({query}) AS q LIMIT {MAX_ROWS}",
                 params)
    if not found:
        return [], 0
    return [r[0] for r in found], found[0][-1]


def rule(c: Check, conn, obj: str, message: str, query: str, params=None, *, info=False):
    """A failure (or, with ``info``, an info finding) naming the rows ``query`` returns."""
    ids, n = first_ids(conn, query, params)
    if n:
        (c.info if info else c.fail)(obj, message, ids, n)
