"""Small helpers shared by the test modules (import them, do not copy them).

- ``raises_sqlstate(code)``: context manager asserting a psycopg error with that
  exact SQLSTATE; the transaction of an autocommit connection is gone with it.
- ``table_digest(conn, table)``: (row count, md5 of every row in id order), to
  prove that an attack changed nothing.
- ``digests(conn, tables)``: the same for several tables at once.
- ``ids``: deterministic uuids for readable fixtures (``ids.user(1)``).
"""

from __future__ import annotations

import contextlib
import uuid

import psycopg
import pytest
from psycopg import sql

# Tables the pack protects (append-only or API-only), in dependency order.
LEDGER_TABLES = (
    "LabVersion",
    "VerificationLog",
    "VerificationAttempt",
    "AuditLog",
    "ResumeBullet",
    "LabAttempt",
    "VerificationJob",
)


@contextlib.contextmanager
def raises_sqlstate(code: str):
    """Assert that the block raises a database error with SQLSTATE ``code``."""
    with pytest.raises(psycopg.Error) as excinfo:
        yield excinfo
    got = excinfo.value.sqlstate
    assert got == code, f"expected SQLSTATE {code}, got {got}: {excinfo.value}"


def table_digest(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """Row count and an md5 over all rows (ordered by their text) of ``table``."""
    query = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
        "FROM {} AS t"
    ).format(sql.Identifier(table))
    count, digest = conn.execute(query).fetchone()
    return count, digest


def digests(conn: psycopg.Connection, tables=LEDGER_TABLES) -> dict[str, tuple[int, str]]:
    present = {
        r[0]
        for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    }
    return {t: table_digest(conn, t) for t in tables if t in present}


class _Ids:
    """Deterministic, readable uuids: ids.user(1) -> 00000000-0000-4000-8000-000000000001."""

    def _make(self, prefix: int, n: int) -> uuid.UUID:
        return uuid.UUID(f"{prefix:08x}-0000-4000-8000-{n:012x}")

    def user(self, n: int) -> uuid.UUID:
        return self._make(1, n)

    def lab(self, n: int) -> uuid.UUID:
        return self._make(2, n)

    def session(self, n: int) -> uuid.UUID:
        return self._make(3, n)

    def log(self, n: int) -> uuid.UUID:
        return self._make(4, n)

    def audit(self, n: int) -> uuid.UUID:
        return self._make(5, n)


ids = _Ids()


def sha(n: int, length: int = 40) -> str:
    """A valid lowercase hex commit SHA derived from ``n``."""
    return format(n, "x").rjust(length, "0")[-length:]
