"""The migration session: one connection (through yoyo's psycopg 3 backend) that
holds the migration lock, runs the files and writes the bookkeeping, with its
settings and its output.

It runs with ``application_name = 'harness'``, the ``lock_timeout`` of its
:class:`~harness.lock_retry.LockRetry` policy and ``statement_timeout`` 0; the
``statement_timeout`` asked for applies to the migrations' own statements only
(:meth:`MigrationSession.set_timeout`), never to the bookkeeping. Server NOTICEs
are printed to ``err`` as they arrive; backfill progress NOTICEs
('V0008 progress: 5000/20000 rows') are drawn as a bar.

Its parts, each in a module of its own: :attr:`lock` (:mod:`harness.migration_lock`),
:attr:`bookkeeping` (:mod:`harness.bookkeeping`), :attr:`retrier`
(:mod:`harness.lock_retry`); the file runner (:mod:`harness.runner`) and the
rollback probe (:mod:`harness.probe`) work through it.
"""

from __future__ import annotations

import re
import sys

import psycopg
from psycopg.conninfo import conninfo_to_dict
from yoyo.connections import parse_uri

from .bookkeeping import MIGRATION_TABLE, Backend, Bookkeeping
from .dsn import redact, session_options, to_uri
from .errors import ServerUnavailable
from .lock_retry import LockRetry, Retrier
from .migration_lock import MigrationLock

_PROGRESS = re.compile(
    r"^(?P<what>\S+) progress: (?P<done>\d+)/(?P<total>\d+) (?P<unit>rows|pages)$")


def progress_bar(message: str, width: int = 30) -> str | None:
    """Draw 'V0008 progress: 5000/20000 rows' (or '... pages') NOTICEs as a bar; None otherwise."""
    m = _PROGRESS.match(message)
    if not m:
        return None
    done, total = int(m["done"]), int(m["total"])
    frac = 1.0 if total == 0 else min(1.0, done / total)
    filled = int(round(frac * width))
    return f"{m['what']} [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} ({done}/{total} {m['unit']})"


class MigrationSession:
    """The migration connection and what hangs on it (see the module docstring)."""

    def __init__(self, dsn: str, *, policy: LockRetry, statement_timeout="0",
                 progress=None, err=None):
        self.dsn = dsn
        self.err = err or sys.stderr
        self.progress = progress
        self.quiet = False      # True while the rollback probe runs: its NOTICEs are not real
        d = conninfo_to_dict(dsn)
        # statement_timeout applies to the migrations' own statements only (set
        # around them by the runner), never to the harness's bookkeeping queries.
        opts = session_options(policy.lock_timeout, "0")
        session_options(policy.lock_timeout, statement_timeout)   # validates the value
        self.statement_timeout = str(statement_timeout).replace(" ", "")
        d["options"] = (d.get("options", "") + " " + opts).strip()
        d["application_name"] = "harness"
        try:
            # yoyo.get_backend() would call init_database() at once, creating
            # yoyo_lock (in public) before we hold our lock and before adoption is
            # decided; build the same backend object, and Bookkeeping.ensure()
            # creates the tables in the bookkeeping schema later.
            self.backend = Backend(parse_uri(to_uri(d)), MIGRATION_TABLE)
        except psycopg.OperationalError as e:
            raise ServerUnavailable(f"cannot connect to {redact(dsn)}: {str(e).strip()}")
        self.conn: psycopg.Connection = self.backend.connection
        self.conn.add_notice_handler(self._notice)
        self.lock = MigrationLock(self.conn)
        self.bookkeeping = Bookkeeping(self)
        self.retrier = Retrier(self, policy)

    # output -------------------------------------------------------------
    def say(self, msg: str) -> None:
        print(msg, file=self.err, flush=True)

    def event(self, kind: str, mid: str) -> None:
        if self.progress:
            self.progress(kind, mid)

    def _notice(self, diag) -> None:
        sev = diag.severity or "NOTICE"
        msg = diag.message_primary or ""
        if msg in ("there is no transaction in progress",) or self.quiet:
            return
        bar = progress_bar(msg)
        if bar is not None:
            self.say(bar)
            return
        line = f"{sev}: {msg}"
        if diag.message_detail:
            line += f"\n  DETAIL: {diag.message_detail}"
        if diag.message_hint:
            line += f"\n  HINT: {diag.message_hint}"
        self.say(line)

    # connection ---------------------------------------------------------
    def reset_tx(self) -> None:
        """Roll back a transaction yoyo's backend opened (after an error)."""
        b = self.backend
        if b._in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            b._in_transaction = False

    def set_timeout(self, *, local: bool) -> None:
        """The statement_timeout asked for, for the migration's own statements."""
        scope = "LOCAL " if local else ""
        self.conn.execute(f"SET {scope}statement_timeout = '{self.statement_timeout}'")

    def close(self) -> None:
        self.retrier.close()
        self.lock.release()
        try:
            self.conn.close()
        except Exception:
            pass
