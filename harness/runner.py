"""The file runner: one code path that runs a file in either direction.

yoyo only finds rollbacks as ``NAME.rollback.sql`` beside a migration, so the
harness builds yoyo ``Migration`` objects itself (:func:`yoyo_migration`) from
``sql/migrations``, ``sql/triggers`` and ``sql/rollback`` (see
:mod:`harness.chain`). :meth:`FileRunner.run` runs a file's migration (``op``
'apply') or its rollback (``op`` 'rollback'); what differs between the two is
described by one :class:`Direction`, and every step goes through the session's
lock retries.

Atomicity
    yoyo's ``apply_one`` runs the steps and then marks the migration in a
    *separate* transaction: a crash in between leaves a schema change that is
    not recorded. The runner opens the transaction itself (``BEGIN``), runs the
    file's whole text as one simple-protocol execute inside it (exactly the
    statements psql would run, in one transaction), writes the bookkeeping
    (yoyo's mark and log row and our row, or their removal for a rollback) and
    commits once. A crash at any moment leaves the database at a recorded
    version.

``-- harness: no-transaction`` files and their recovery story
    Such files (``CREATE INDEX CONCURRENTLY``, batched backfills that COMMIT as
    they go) cannot run in a transaction. Their statements run one by one in
    autocommit mode, so the bookkeeping must never disagree with what already
    committed: before the first statement the file is recorded as in progress
    (``_harness_migration.state`` = 'applying', or 'rolling_back' for a
    rollback, which also stops it counting as applied), and only after the last
    one is it recorded as complete (yoyo's mark and ``state`` = 'applied'; for a
    rollback every record removed), in one transaction. If the run dies or the
    final bookkeeping write fails, ``status`` lists the file under
    ``incomplete`` (and among ``pending``, not ``applied``); the next ``apply``
    runs it again from the top (after finishing an interrupted rollback with the
    rollback file), the next ``rollback`` runs its rollback file and removes the
    records. Both files are written to be rerun from the top (``IF NOT EXISTS``,
    backfills that resume); a failed ``CREATE INDEX CONCURRENTLY`` leaves an
    INVALID index behind, which ``IF NOT EXISTS`` would happily keep, so before
    (re-)running such a file the runner drops every INVALID index the file
    creates (``DROP INDEX CONCURRENTLY IF EXISTS``). CONCURRENTLY statements run
    under the concurrent lock_timeout (see :mod:`harness.lock_retry`).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass

import sqlparse
from psycopg import sql as pgsql
from yoyo.migrations import Migration, MigrationStep

from .chain import MigrationFile
from .errors import ChainError, MigrationFailed, PreflightRefused, describe_pg_error
from .sqlnames import QUALIFIED


class _FileStep(MigrationStep):
    """A yoyo step whose result rows (if any) go to stderr, not stdout."""

    def _execute(self, cursor, stmt, out=None):
        cursor.execute(stmt)
        if cursor.description:
            cursor.fetchall()


def yoyo_migration(f: MigrationFile, direction: str = "apply") -> Migration:
    """A yoyo Migration built from our two folders (not from NAME.rollback.sql)."""
    m = Migration(f.id, str(f.path), str(f.path.parent))
    text = f.sql if direction == "apply" else (f.rollback_sql or "")
    no_tx = f.no_transaction if direction == "apply" else f.rollback_no_transaction
    if no_tx:
        stmts = split_statements(text)
        m.steps = [_FileStep(i, s if direction == "apply" else None,
                             s if direction == "rollback" else None)
                   for i, s in enumerate(stmts)]
    else:
        m.steps = [_FileStep(0, f.sql, f.rollback_sql)]
    m.use_transactions = not no_tx
    m.source = f.sql
    m._depends = set()
    return m


def split_statements(text: str) -> list[str]:
    """Statements of a file as psql would send them (comment-only pieces dropped)."""
    out = []
    for s in sqlparse.split(text):
        stripped = sqlparse.format(s, strip_comments=True).strip().rstrip(";").strip()
        if stripped:
            out.append(s)
    return out


_TX_CONTROL = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|END|START\s+TRANSACTION|ABORT)\b", re.I)


def transaction_control_statements(text: str) -> list[str]:
    """Top-level BEGIN/COMMIT/... statements (the harness owns the transaction)."""
    found = []
    for s in split_statements(text):
        body = sqlparse.format(s, strip_comments=True).strip()
        if _TX_CONTROL.match(body):
            found.append(body.splitlines()[0])
    return found


_CIC = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(" + QUALIFIED + ")", re.I)


_CONCURRENT = re.compile(
    r"^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX)\b[^;]*\bCONCURRENTLY\b",
    re.I | re.S)


def is_concurrent(stmt: str) -> bool:
    """CREATE/DROP INDEX CONCURRENTLY or REINDEX ... CONCURRENTLY (comments ignored)."""
    return bool(_CONCURRENT.match(sqlparse.format(stmt, strip_comments=True)))


def created_indexes(text: str) -> list[str]:
    """Index names (as written) a file creates with CREATE INDEX CONCURRENTLY."""
    clean = sqlparse.format(text, strip_comments=True)
    return _CIC.findall(clean)


# ---------------------------------------------------------------------------
# the runner

@dataclass(frozen=True)
class Direction:
    """What differs between applying a file and rolling it back."""

    op: str               # 'apply' | 'rollback': yoyo's step direction and the event
    text: str             # the SQL text that runs
    path: str             # its path, for errors
    no_transaction: bool
    doing: str            # 'applying' | 'rolling back'
    done: str             # 'applied' | 'rolled back'
    done_event: str       # 'applied' | 'rolled_back'
    in_progress: str      # the state of a no-transaction file under way
    subject: str          # what a failed transaction did not commit

    @classmethod
    def of(cls, f: MigrationFile, op: str) -> "Direction":
        if op == "apply":
            return cls("apply", f.sql, f.relpath(), f.no_transaction, "applying", "applied",
                       "applied", "applying", f.id)
        assert op == "rollback", op
        return cls("rollback", f.rollback_sql or "", f.rollback_relpath(),
                   f.rollback_no_transaction, "rolling back", "rolled back", "rolled_back",
                   "rolling_back", f"the rollback of {f.id}")


class FileRunner:
    """Runs files in either direction through a :class:`~harness.session.MigrationSession`."""

    def __init__(self, session):
        self.s = session
        self.stmts_done = 0   # statements of the current no-transaction file completed
        #: what is committed if the step under way stops now (a string, or a function
        #: returning one): the same account for an error and for an interrupt
        self.state_after = None
        self.interrupted = False

    def committed_so_far(self) -> str | None:
        """What the file under way has committed, for the report of an interrupt."""
        st = self.state_after
        return st() if callable(st) else st

    def run(self, f: MigrationFile, op: str, *, preserve: bool = False) -> None:
        """Apply (``op`` 'apply') or roll back (``op`` 'rollback') one file with its
        bookkeeping; ``preserve`` runs it with forgea.rollback_preserve = on."""
        s, d = self.s, Direction.of(f, op)
        tc = transaction_control_statements(d.text)
        if tc:
            raise ChainError(f"{d.path}: contains transaction control ({', '.join(tc)}); "
                             "the harness runs each file in its own transaction")
        m = yoyo_migration(f, op)
        s.event(op, f.id)
        t0 = time.monotonic()
        if d.no_transaction:
            self._no_transaction(f, d, m, preserve)
        else:
            self._transactional(f, d, m, preserve)
        s.say(f"{d.done} {f.id} ({time.monotonic() - t0:.2f}s)")
        s.event(d.done_event, f.id)

    def adopt(self, f: MigrationFile) -> None:
        """Record the baseline as applied and adopted, without running it."""
        s = self.s
        m = yoyo_migration(f, "apply")
        with s.backend.transaction():
            s.bookkeeping.record(f, m, adopted=True)
        from .catalog import extensions
        seen = extensions(s.conn)
        s.say(f"adopted {f.id}: the live schema matches the baseline "
              "(recorded as applied, not run)"
              + (f"; the objects of extensions {', '.join(seen)} are not the baseline's "
                 "and were ignored" if seen else ""))
        s.event("adopted", f.id)

    def _transactional(self, f: MigrationFile, d: Direction, m: Migration,
                       preserve: bool) -> None:
        s = self.s

        def run():
            with s.backend.transaction():
                if preserve:
                    s.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
                s.set_timeout(local=True)
                m.process_steps(s.backend, d.op)     # savepoint inside our BEGIN
                s.conn.execute("SET LOCAL statement_timeout = 0")
                s.bookkeeping.complete(f, m, d.op)   # same transaction

        self._retry(f, d, run, state_after=(
            f"nothing of {d.subject} was committed (its statements and its bookkeeping "
            "share one transaction)"))

    def _no_transaction(self, f: MigrationFile, d: Direction, m: Migration,
                        preserve: bool) -> None:
        """A no-transaction file in three steps, so that the bookkeeping never
        disagrees with the schema: (1) record it as in progress, (2) run its
        statements one by one (autocommit), (3) record it as complete (applied, or
        gone). A failure or a crash after (1) leaves it *incomplete* (``status``
        says so); the next ``apply`` redoes it from the top, the next ``rollback``
        undoes it (both files are written to be rerun from the top). A retry after
        lock_not_available repeats only the step that failed."""
        s = self.s
        incomplete = (f"{f.id} is recorded as incomplete ({d.in_progress}); `harness status` "
                      "shows it; `harness apply` redoes it from the top, `harness rollback` "
                      "undoes it")

        def start():
            with s.backend.transaction():
                s.bookkeeping.mark_in_progress(f, d.in_progress)

        def statements():
            self.stmts_done = 0
            self.drop_invalid_indexes(d.text)
            if preserve:
                s.conn.execute("SET forgea.rollback_preserve = 'on'")
            s.set_timeout(local=False)
            try:
                for step in m.steps:          # file order, as psql would
                    stmt = step._apply if d.op == "apply" else step._rollback
                    with self.concurrent_timeout(isinstance(stmt, str) and is_concurrent(stmt)):
                        if d.op == "apply":
                            step.apply(s.backend)
                        else:
                            step.rollback(s.backend)
                    self.stmts_done += 1
            finally:
                if not s.conn.broken:
                    s.conn.execute("SET statement_timeout = 0")
                    if preserve:
                        s.conn.execute("RESET forgea.rollback_preserve")

        def finish():
            with s.backend.transaction():
                s.bookkeeping.complete(f, m, d.op)

        def partly():
            k, n = self.stmts_done, len(m.steps)
            how = "was interrupted" if self.interrupted else "failed"
            return (f"{k} of the {n} statements of {d.path} completed before statement "
                    f"{k + 1} {how} (each commits on its own; a batched procedure keeps "
                    f"the batches it finished); {incomplete}")

        self._retry(f, d, start, state_after=f"nothing of {d.path} ran")
        self._retry(f, d, statements, state_after=partly)
        self._retry(f, d, finish,
                    state_after=f"every statement of {d.path} committed; {incomplete}")

    def _retry(self, f: MigrationFile, d: Direction, fn, *, state_after=None):
        """Run ``fn`` under the session's lock retries. ``state_after``: what a
        failure leaves committed (a string, or a function returning one), added to
        the error. A failure while writing the bookkeeping names the bookkeeping
        table, not a line of the file."""
        sess = self.s
        self.state_after = state_after

        def on_error(e, *, exhausted, attempts=0, waited=0.0):
            lost = sess.conn.closed or sess.conn.broken
            bk = sess.bookkeeping.step
            st = state_after() if callable(state_after) else state_after
            after = [st] if st else []
            if lost:    # a COMMIT may or may not have reached the server
                after = ["the connection was lost, so whether the last step committed "
                         "is unknown; `harness status` shows what is recorded"]
            if exhausted:
                head = (f"{d.doing} {f.id}: writing the bookkeeping ({bk}) failed"
                        if bk else f"{d.doing} {f.id}")
                return sess.retrier.not_granted(
                    head, e, attempts, waited, after=after,
                    file=bk or d.path)
            if bk:
                line, extra = describe_pg_error(e)
                return MigrationFailed(
                    f"{d.doing} {f.id}: writing the bookkeeping ({bk}) failed"
                    + (" (connection lost)" if lost else "") + f": {line}",
                    sqlstate=e.sqlstate, file=bk, details=extra + after)
            if lost:
                line, extra = describe_pg_error(e, file=d.path)
                return MigrationFailed(f"{d.doing} {f.id}: connection lost: {line}",
                                       sqlstate=e.sqlstate, file=d.path,
                                       details=extra + after)
            line, extra = describe_pg_error(e, file=d.path, sql=d.text)
            cls = PreflightRefused if e.sqlstate == "FM001" else MigrationFailed
            return cls(line, sqlstate=e.sqlstate, file=d.path, details=extra + after)

        return sess.retrier.run(f.id, fn, on_error)

    @contextlib.contextmanager
    def concurrent_timeout(self, on: bool = True):
        """Run a CONCURRENTLY statement under the concurrent lock_timeout (see
        :mod:`harness.lock_retry`); the session's lock_timeout afterwards."""
        if not on:
            yield
            return
        conn, policy = self.s.conn, self.s.retrier.policy
        conn.execute(pgsql.SQL("SET lock_timeout = {}").format(
            pgsql.Literal(policy.concurrent_lock_timeout)))
        try:
            yield
        finally:
            if not (conn.closed or conn.broken):
                conn.execute(pgsql.SQL("SET lock_timeout = {}").format(
                    pgsql.Literal(policy.lock_timeout)))

    def drop_invalid_indexes(self, text: str) -> None:
        """Drop every INVALID index ``text`` creates concurrently (an interrupted
        build leaves one, which IF NOT EXISTS would keep)."""
        conn = self.s.conn
        for name in created_indexes(text):
            row = conn.execute(
                "SELECT c.oid::regclass::text FROM pg_catalog.pg_index i "
                "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                "WHERE c.oid = to_regclass(%s) AND NOT i.indisvalid", (name,)).fetchone()
            if row:
                self.s.say(f"dropping INVALID index {row[0]} left by an interrupted run")
                with self.concurrent_timeout():
                    conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
