"""The rollback probe: every rollback of a run tried in one transaction first.

A rollback of several files commits file by file. Without a probe, a refusal by
an older file (FM002: rows the old schema cannot hold) would come after newer
files had been rolled back and committed, leaving e.g. a queue with jobs but
without its guards. :func:`probe_rollback` runs them all in one transaction and
rolls it back, so the refusal comes before anything changed.
"""

from __future__ import annotations

import contextlib
import re

import psycopg
import sqlparse

from .chain import MigrationFile
from .errors import MigrationFailed, RollbackRefused, describe_pg_error


def probe_rollback(session, victims: list[MigrationFile], *, preserve: bool = False) -> None:
    """Run every transactional rollback of ``victims`` in ONE transaction, then
    ROLLBACK it: nothing changes, but any refusal (FM002: rows the old schema
    cannot hold) or other error shows up before the first file is really
    rolled back. Without the probe, a refusal by an older file would come after
    newer files had already been rolled back and committed, leaving e.g. a
    queue with jobs but without its guards. no-transaction rollbacks (DROP INDEX
    CONCURRENTLY) run in the probe without CONCURRENTLY, so that later files
    see the schema they will really see; a statement that still cannot run
    inside a transaction is skipped (savepoint). The probe holds the locks of
    the whole rollback until it ends (run rollbacks in a maintenance window);
    a lock timeout restarts it under the lock retry policy. What the
    application writes after the probe can still make a file refuse in the
    real run: the run then stops at a recorded version and says so."""
    current: list[MigrationFile | None] = [None]

    def probe():
        session.quiet = True   # the probe's NOTICEs (e.g. "archived N rows") are not real
        try:
            session.conn.execute("BEGIN")
            if preserve:
                session.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
            for f in victims:
                current[0] = f
                if f.rollback_no_transaction:
                    _probe_no_transaction(session, f)
                    continue
                session.conn.execute(f.rollback_sql or "SELECT 1")
        finally:
            session.quiet = False
            if not session.conn.closed and (session.conn.info.transaction_status
                                            != psycopg.pq.TransactionStatus.IDLE):
                with contextlib.suppress(psycopg.Error):
                    session.conn.execute("ROLLBACK")

    def on_error(e, *, exhausted, attempts=0, waited=0.0):
        path = current[0].rollback_relpath() if current[0] else "(probe)"
        if exhausted:
            return session.retrier.not_granted(
                f"rollback probe ({path})", e, attempts, waited, file=path,
                after=["the probe changes nothing: nothing was rolled back"])
        line, extra = describe_pg_error(e, file=path)
        if e.sqlstate == "FM002":
            return RollbackRefused(
                f"rollback refused before anything was changed: {line}", details=extra,
                sqlstate=e.sqlstate)
        return MigrationFailed(f"rollback probe failed, nothing was changed: {line}",
                               sqlstate=e.sqlstate, file=path, details=extra)

    session.retrier.run("rollback probe", probe, on_error)


def _probe_no_transaction(session, f: MigrationFile) -> None:
    for stmt in sqlparse.split(f.rollback_sql or ""):
        body = sqlparse.format(stmt, strip_comments=True).strip()
        if not body:
            continue
        session.conn.execute("SAVEPOINT harness_probe")
        try:
            session.conn.execute(re.sub(r"\bCONCURRENTLY\b", "", body, flags=re.I))
        except psycopg.errors.ActiveSqlTransaction:
            session.conn.execute("ROLLBACK TO SAVEPOINT harness_probe")
        session.conn.execute("RELEASE SAVEPOINT harness_probe")
