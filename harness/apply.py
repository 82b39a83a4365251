"""Apply, roll back and report migrations through yoyo-migrations, closing its gaps.

yoyo only finds rollbacks as ``NAME.rollback.sql`` beside a migration, so the
harness builds yoyo ``Migration`` objects itself from ``sql/migrations``,
``sql/triggers`` and ``sql/rollback`` (see :mod:`harness.chain`) and drives a
yoyo PostgreSQL backend (psycopg 3) directly:

Atomicity
    yoyo's ``apply_one`` runs the steps and then marks the migration in a
    *separate* transaction: a crash in between leaves a schema change that is
    not recorded. The harness opens the transaction itself (``BEGIN``), runs the
    file's whole text as one simple-protocol execute inside it (exactly the
    statements psql would run, in one transaction), writes yoyo's
    ``_yoyo_migration`` mark, its ``_yoyo_log`` row and our ``_harness_migration``
    row, and commits once. A crash at any moment leaves the database at a
    recorded version. Rollbacks are the same: rollback file + unmark, one commit.

Checksums / drift
    ``_harness_migration`` records the sha256 of each file (and of its rollback)
    at apply time. ``status`` reports applied files whose content changed
    (``drift``); ``apply`` refuses to run while anything drifted.

Locking
    yoyo's lock row (``yoyo_lock``) survives a crashed run. The harness instead
    holds a session-level advisory lock (``pg_try_advisory_lock``) on the
    migration connection for the whole run: it vanishes with the session when the
    process dies (or its backend is terminated). A second run waits up to
    ``lock_wait`` seconds, then stops naming the holder's pid.

Sessions
    Every migration session runs with ``application_name = 'harness'``,
    ``lock_timeout`` (default 5s) and ``statement_timeout`` (default 0). A
    migration that fails only with ``lock_not_available`` (55P03) is rolled back
    and retried up to 5 times with exponential backoff. Server NOTICEs are
    printed to stderr as they arrive.

``-- harness: no-transaction`` files and their recovery story
    Such files (``CREATE INDEX CONCURRENTLY`` ...) cannot run in a transaction.
    Their statements run one by one in autocommit mode, then the migration is
    recorded in a transaction of its own. They must be idempotent (``IF NOT
    EXISTS``). If the run dies half-way, some statements are committed and the
    migration is NOT recorded, so it stays pending; a failed ``CREATE INDEX
    CONCURRENTLY`` leaves an INVALID index behind, which ``IF NOT EXISTS`` would
    happily keep. So before (re-)running such a file the harness looks up every
    index the file creates and drops it with ``DROP INDEX CONCURRENTLY IF
    EXISTS`` when it is INVALID; then the whole file runs again from the top.

Adoption
    When ``V0001`` (the ``-- harness: baseline`` file) is not recorded but the
    ``public`` schema already holds objects (production built by Prisma), the
    harness compares the live catalog with the catalog the baseline creates (run
    in a scratch schema inside a transaction that is rolled back; no CREATEDB
    needed). Identical: the baseline is recorded as applied and *adopted*
    without running it, and the rest is applied. Different: refuse, change
    nothing, list the differences. An adopted baseline is never rolled back.

Nothing is created in the database before the lock is held, the chain has been
checked, drift has been ruled out and adoption has been decided.
"""

from __future__ import annotations

import getpass
import random
import re
import socket
import string
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode

import psycopg
import sqlparse
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri
from yoyo.migrations import Migration, MigrationStep, get_migration_hash

from . import catalog
from .chain import MigrationFile, find, load_chain
from .errors import (AdoptionMismatch, ChainError, DriftError, LockHeld, MigrationFailed,
                     RefusedError, RollbackRefused, ServerUnavailable, UsageError,
                     describe_pg_error)

#: advisory lock key of the harness (per database): 'FRG1'
LOCK_KEY = 0x46524731
MIGRATION_TABLE = "_yoyo_migration"
MAX_LOCK_RETRIES = 5
RETRY_BASE_DELAY = 0.5

HARNESS_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS _harness_migration (
    migration_id      text PRIMARY KEY,
    checksum          text NOT NULL,
    rollback_checksum text,
    adopted           boolean NOT NULL DEFAULT false,
    no_transaction    boolean NOT NULL DEFAULT false,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    applied_by        text NOT NULL DEFAULT current_user
)"""

Progress = Callable[[str, str], None]


# ---------------------------------------------------------------------------
# results

@dataclass
class ApplyResult:
    target: str
    applied: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)   # dry run: what would run
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.adopted)


@dataclass
class RollbackResult:
    target: str
    rolled_back: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    dry_run: bool = False


# ---------------------------------------------------------------------------
# connection helpers

def redact(dsn: str) -> str:
    """The DSN with any password removed (for printing)."""
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return dsn
    if "password" not in d and ":" not in dsn.split("@")[0].split("//")[-1]:
        return dsn
    d.pop("password", None)
    return to_uri(d, scheme="postgresql")


def to_uri(d: dict, scheme: str = "postgresql+psycopg") -> str:
    d = {k: str(v) for k, v in d.items() if v is not None}
    user = d.pop("user", None)
    password = d.pop("password", None)
    dbname = d.pop("dbname", "")
    host = d.pop("host", None)
    port = d.pop("port", None)
    netloc = ""
    if user:
        netloc = quote(user, safe="")
        if password:
            netloc += ":" + quote(password, safe="")
        netloc += "@"
    args = {}
    simple_host = host and re.fullmatch(r"[A-Za-z0-9.\-]+", host)
    if simple_host:
        netloc += host
        if port and port.isdigit():
            netloc += ":" + port
        elif port:
            args["port"] = port
    else:
        if host:
            args["host"] = host
        if port:
            args["port"] = port
    args.update(d)
    q = ("?" + urlencode(args)) if args else ""
    return f"{scheme}://{netloc}/{quote(dbname, safe='')}{q}"


def _session_options(lock_timeout: str, statement_timeout: str) -> str:
    for name, v in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
        if not re.fullmatch(r"\d+\s*(ms|s|min|h|d)?", str(v).strip()):
            raise UsageError(f"bad {name} {v!r} (use e.g. 5s, 500ms, 0)")
    return (f"-c lock_timeout={str(lock_timeout).replace(' ', '')} "
            f"-c statement_timeout={str(statement_timeout).replace(' ', '')}")


def connect(dsn: str, *, lock_timeout="5s", statement_timeout="0", autocommit=True):
    """A plain psycopg connection with the harness session settings."""
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name="harness",
                               options=_session_options(lock_timeout, statement_timeout))
    except psycopg.OperationalError as e:
        raise ServerUnavailable(f"cannot connect to {redact(dsn)}: {str(e).strip()}")
    return conn


class _Backend(PostgresqlPsycopgBackend):
    """yoyo's psycopg 3 backend, with a cached host name for ``_yoyo_log``."""

    _hostname: str | None = None

    def get_log_data(self, migration=None, operation="apply"):
        if _Backend._hostname is None:
            _Backend._hostname = socket.gethostname()
        return {
            "id": __import__("uuid").uuid1().hex[:32],
            "migration_id": migration.id if migration else None,
            "migration_hash": migration.hash if migration else None,
            "username": getpass.getuser(),
            "hostname": _Backend._hostname,
            "created_at_utc": datetime.now(timezone.utc).replace(tzinfo=None),
            "operation": operation,
        }


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
    r"((?:\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*)(?:\.(?:\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*))?)",
    re.I)


def created_indexes(text: str) -> list[str]:
    """Index names (as written) a file creates with CREATE INDEX CONCURRENTLY."""
    clean = sqlparse.format(text, strip_comments=True)
    return _CIC.findall(clean)


# ---------------------------------------------------------------------------
# state

def _read_state(conn) -> dict[str, dict]:
    """Applied migrations by id (empty when the bookkeeping tables are missing)."""
    state: dict[str, dict] = {}
    cur = conn.cursor()
    cur.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (MIGRATION_TABLE, "_harness_migration"))
    has_yoyo, has_harness = cur.fetchone()
    if not has_yoyo:
        return state
    cur.execute(f"SELECT migration_id, applied_at_utc FROM {MIGRATION_TABLE} "
                "ORDER BY applied_at_utc, migration_id")
    for mid, at in cur.fetchall():
        state[mid] = {"id": mid, "applied_at": at.replace(tzinfo=timezone.utc).isoformat()
                      if at else None, "checksum": None, "rollback_checksum": None,
                      "adopted": False}
    if has_harness:
        cur.execute("SELECT migration_id, checksum, rollback_checksum, adopted, applied_at "
                    "FROM _harness_migration")
        for mid, cs, rcs, adopted, at in cur.fetchall():
            if mid in state:
                state[mid].update(checksum=cs, rollback_checksum=rcs, adopted=adopted,
                                  applied_at=at.isoformat() if at else state[mid]["applied_at"])
    return state


def _compute_status(files: list[MigrationFile], state: dict[str, dict], root: Path | None):
    by_id = {f.id: f for f in files}
    applied, pending, drift, unknown, rb_changed = [], [], [], [], []
    for f in files:
        rec = state.get(f.id)
        if rec is None:
            pending.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                            "checksum": f.checksum, "no_transaction": f.no_transaction,
                            "baseline": f.baseline})
            continue
        applied.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                        "checksum": rec["checksum"], "applied_at": rec["applied_at"],
                        "adopted": rec["adopted"]})
        if rec["checksum"] and rec["checksum"] != f.checksum:
            drift.append({"id": f.id, "file": f.relpath(root), "recorded_checksum":
                          rec["checksum"], "checksum": f.checksum})
        if rec["rollback_checksum"] and rec["rollback_checksum"] != f.rollback_checksum:
            rb_changed.append({"id": f.id, "file": f.rollback_relpath(root),
                               "recorded_checksum": rec["rollback_checksum"],
                               "checksum": f.rollback_checksum})
    for mid, rec in state.items():
        if mid not in by_id:
            unknown.append({"id": mid, "applied_at": rec["applied_at"],
                            "checksum": rec["checksum"]})
    # out of order: a pending file older than an applied one
    out_of_order = []
    if applied:
        newest = max(a["version"] for a in applied)
        out_of_order = [p["id"] for p in pending if p["version"] < newest]
    return {"applied": applied, "pending": pending, "drift": drift, "unknown": unknown,
            "rollback_changed": rb_changed, "out_of_order": out_of_order,
            "current": applied[-1]["id"] if applied else None}


def status(target_dsn: str, sql_root: Path | None = None) -> dict:
    """CONTRACT 8: ``applied`` / ``pending`` / ``drift`` lists (oldest first).

    Read-only: works (everything pending) on a database without bookkeeping.
    """
    files = load_chain(sql_root)
    root = Path(sql_root).parent if sql_root else None
    with connect(target_dsn) as conn:
        state = _read_state(conn)
        server_version = conn.info.server_version
    out = _compute_status(files, state, root)
    out["target"] = redact(target_dsn)
    out["server_version"] = server_version
    return out


def _refuse_if_unsafe(st: dict) -> None:
    if st["drift"]:
        raise DriftError(
            "refusing to proceed: applied migration files were edited since they were "
            "applied (drift)",
            details=[f"{d['file']}: recorded sha256 {d['recorded_checksum'][:12]}..., "
                     f"file now {d['checksum'][:12]}..." for d in st["drift"]]
            + ["restore the applied files; put changes in a new migration"])
    if st["unknown"]:
        raise RefusedError(
            "refusing to proceed: the database has migrations this tree does not know "
            "(is the checkout older than the database?)",
            details=[u["id"] for u in st["unknown"]])
    if st["out_of_order"]:
        raise RefusedError(
            "refusing to proceed: pending migrations are older than the newest applied "
            "one (they would run out of order)",
            details=st["out_of_order"])


# ---------------------------------------------------------------------------
# adoption

def expected_baseline_catalog(conn, baseline: MigrationFile) -> dict:
    """Catalog the baseline creates: run it in a scratch schema, snapshot, ROLLBACK."""
    scratch = "_harness_adopt_" + "".join(random.choices(string.ascii_lowercase, k=8))
    try:
        with conn.transaction() as tx:
            cur = conn.cursor()
            cur.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(scratch)))
            cur.execute(pgsql.SQL("SET LOCAL search_path TO {}").format(
                pgsql.Identifier(scratch)))
            try:
                cur.execute(baseline.sql)
            except psycopg.Error as e:
                line, extra = describe_pg_error(e, file=baseline.relpath(), sql=baseline.sql)
                raise MigrationFailed(
                    "could not build the expected baseline catalog in a scratch schema: "
                    + line, sqlstate=e.sqlstate, details=extra)
            snap = catalog.snapshot(conn, scratch)
            raise psycopg.Rollback(tx)
    except psycopg.Error as e:
        line, extra = describe_pg_error(e)
        raise MigrationFailed("could not build the expected baseline catalog: " + line,
                              details=extra)
    return snap


def adoption_check(conn, baseline: MigrationFile) -> list[str] | None:
    """None: public is empty (run the baseline). []: adoptable. [...]: differences."""
    live = catalog.snapshot(conn, "public")
    if catalog.is_empty(live):
        return None
    expected = expected_baseline_catalog(conn, baseline)
    return catalog.diff(expected, live, labels=("baseline", "production"))


# ---------------------------------------------------------------------------
# progress of batched backfills

_PROGRESS = re.compile(
    r"^(?P<what>\S+) progress: (?P<done>\d+)/(?P<total>\d+) (?P<unit>rows|pages)$")


def progress_bar(message: str, width: int = 30) -> str | None:
    """Draw 'V0012 progress: 5000/20000 rows' (or '... pages') NOTICEs as a bar; None otherwise."""
    m = _PROGRESS.match(message)
    if not m:
        return None
    done, total = int(m["done"]), int(m["total"])
    frac = 1.0 if total == 0 else min(1.0, done / total)
    filled = int(round(frac * width))
    return f"{m['what']} [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} ({done}/{total} {m['unit']})"


# ---------------------------------------------------------------------------
# the migration session

class _Session:
    def __init__(self, dsn, *, lock_timeout="5s", statement_timeout="0", progress=None,
                 err=None):
        self.dsn = dsn
        self.err = err or sys.stderr
        self.progress = progress
        d = conninfo_to_dict(dsn)
        # statement_timeout applies to the migrations' own statements only (set
        # around them below), never to the harness's bookkeeping queries.
        opts = _session_options(lock_timeout, "0")
        _session_options(lock_timeout, statement_timeout)   # validates the value
        self.statement_timeout = str(statement_timeout).replace(" ", "")
        d["options"] = (d.get("options", "") + " " + opts).strip()
        d["application_name"] = "harness"
        uri = to_uri(d)
        try:
            # yoyo.get_backend() would call init_database() at once, creating
            # yoyo_lock before we hold our lock and before adoption is decided;
            # build the same backend object and initialise it ourselves later.
            self.backend = _Backend(parse_uri(uri), MIGRATION_TABLE)
        except psycopg.OperationalError as e:
            raise ServerUnavailable(f"cannot connect to {redact(dsn)}: {str(e).strip()}")
        self.conn: psycopg.Connection = self.backend.connection
        self.conn.add_notice_handler(self._notice)
        self.locked = False
        self.quiet = False

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

    # lock ---------------------------------------------------------------
    def lock(self, wait: float) -> None:
        deadline = time.monotonic() + max(0.0, float(wait))
        announced = False
        while True:
            got = self.conn.execute("SELECT pg_try_advisory_lock(%s::bigint)",
                                    (LOCK_KEY,)).fetchone()[0]
            if got:
                self.locked = True
                return
            holder = self.lock_holder()
            if time.monotonic() >= deadline:
                who = (f"pid {holder['pid']} (application_name {holder['application_name']!r}, "
                       f"user {holder['usename']!r}, state {holder['state']!r})"
                       if holder else "another session")
                raise LockHeld(
                    f"another harness run holds the migration lock on this database: "
                    f"{who}; waited {wait:g}s",
                    details=["if that process is gone but its backend lingers, a DBA can "
                             f"end it: SELECT pg_terminate_backend({holder['pid'] if holder else 'PID'});"])
            if not announced:
                self.say(f"waiting up to {wait:g}s for the migration lock held by pid "
                         f"{holder['pid'] if holder else '?'} ...")
                announced = True
            time.sleep(0.2)

    def lock_holder(self) -> dict | None:
        row = self.conn.execute("""
            SELECT l.pid, a.application_name, a.usename, a.state, a.backend_start
            FROM pg_catalog.pg_locks l
            LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0
              AND l.objid = %s AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                WHERE datname = current_database())
            LIMIT 1""", (LOCK_KEY,)).fetchone()
        if not row:
            return None
        return dict(zip(("pid", "application_name", "usename", "state", "backend_start"), row))

    def close(self) -> None:
        try:
            if self.locked and not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (LOCK_KEY,))
        except psycopg.Error:
            pass
        try:
            self.conn.close()
        except Exception:
            pass

    # bookkeeping ----------------------------------------------------------
    def ensure_bookkeeping(self) -> None:
        assert self.locked
        b = self.backend
        b._is_locked = True          # yoyo's lock row is never used: we hold ours
        b.init_database()            # yoyo_lock table + transactional DDL probe
        b.ensure_internal_schema_updated()   # _yoyo_migration, _yoyo_log, _yoyo_version
        if not self.conn.execute(
                "SELECT to_regclass('_harness_migration') IS NOT NULL").fetchone()[0]:
            self.conn.execute(HARNESS_TABLE_DDL)

    def record(self, f: MigrationFile, m: Migration, *, adopted: bool) -> None:
        b = self.backend
        b.mark_one(m, log=False)
        b.log_migration(m, "mark" if adopted else "apply")
        self.conn.execute(
            "INSERT INTO _harness_migration (migration_id, checksum, rollback_checksum, "
            "adopted, no_transaction) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (migration_id) DO UPDATE SET checksum = EXCLUDED.checksum, "
            "rollback_checksum = EXCLUDED.rollback_checksum, adopted = EXCLUDED.adopted, "
            "no_transaction = EXCLUDED.no_transaction, applied_at = now(), "
            "applied_by = current_user",
            (f.id, f.checksum, f.rollback_checksum, adopted, f.no_transaction))

    def unrecord(self, f: MigrationFile, m: Migration) -> None:
        b = self.backend
        b.unmark_one(m, log=False)
        b.log_migration(m, "rollback")
        self.conn.execute("DELETE FROM _harness_migration WHERE migration_id = %s", (f.id,))

    # running ----------------------------------------------------------------
    def _reset_tx(self):
        b = self.backend
        if b._in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            b._in_transaction = False

    def _with_retries(self, f: MigrationFile, what: str, fn, path_for_error: str, text: str):
        attempt = 0
        while True:
            try:
                return fn()
            except psycopg.Error as e:
                self._reset_tx()
                if self.conn.closed or self.conn.broken:
                    line, extra = describe_pg_error(e, file=path_for_error)
                    raise MigrationFailed(f"{what} {f.id}: connection lost: {line}",
                                          sqlstate=e.sqlstate, file=path_for_error,
                                          details=extra)
                if e.sqlstate == "55P03" and attempt < MAX_LOCK_RETRIES:
                    attempt += 1
                    delay = RETRY_BASE_DELAY * (2 ** (attempt - 1))
                    self.say(f"{f.id}: lock not available (55P03: "
                             f"{(e.diag.message_primary or '').strip()}); "
                             f"retry {attempt}/{MAX_LOCK_RETRIES} in {delay:g}s")
                    self.event("retry", f.id)
                    time.sleep(delay)
                    continue
                line, extra = describe_pg_error(e, file=path_for_error, sql=text)
                raise MigrationFailed(line, sqlstate=e.sqlstate, file=path_for_error,
                                      details=extra)

    def _set_timeout(self, *, local: bool) -> None:
        scope = "LOCAL " if local else ""
        self.conn.execute(f"SET {scope}statement_timeout = '{self.statement_timeout}'")

    def _check_file(self, f: MigrationFile, text: str, path: str) -> None:
        tc = transaction_control_statements(text)
        if tc:
            raise ChainError(f"{path}: contains transaction control ({', '.join(tc)}); "
                             "the harness runs each file in its own transaction")

    def apply_one(self, f: MigrationFile, *, preserve: bool = False) -> None:
        path = f.relpath()
        self._check_file(f, f.sql, path)
        m = yoyo_migration(f, "apply")
        self.event("apply", f.id)
        t0 = time.monotonic()
        if f.no_transaction:
            def run():
                self.drop_invalid_indexes(f.sql)
                if preserve:
                    self.conn.execute("SET forgea.rollback_preserve = 'on'")
                self._set_timeout(local=False)
                try:
                    for step in m.steps:
                        step.apply(self.backend)
                finally:
                    if not self.conn.broken:
                        self.conn.execute("SET statement_timeout = 0")
                    if preserve:
                        self.conn.execute("RESET forgea.rollback_preserve")
                with self.backend.transaction():
                    self.record(f, m, adopted=False)
        else:
            def run():
                with self.backend.transaction():
                    if preserve:
                        self.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
                    self._set_timeout(local=True)
                    m.process_steps(self.backend, "apply")   # savepoint inside our BEGIN
                    self.conn.execute("SET LOCAL statement_timeout = 0")
                    self.record(f, m, adopted=False)          # same transaction
        self._with_retries(f, "applying", run, path, f.sql)
        self.say(f"applied {f.id} ({time.monotonic() - t0:.2f}s)")
        self.event("applied", f.id)

    def adopt(self, f: MigrationFile) -> None:
        m = yoyo_migration(f, "apply")
        with self.backend.transaction():
            self.record(f, m, adopted=True)
        self.say(f"adopted {f.id}: the live schema matches the baseline "
                 "(recorded as applied, not run)")
        self.event("adopted", f.id)

    def rollback_one(self, f: MigrationFile, *, preserve: bool = False) -> None:
        path = f.rollback_relpath()
        text = f.rollback_sql or ""
        self._check_file(f, text, path)
        m = yoyo_migration(f, "rollback")
        self.event("rollback", f.id)
        t0 = time.monotonic()
        if f.rollback_no_transaction:
            def run():
                self.drop_invalid_indexes(text)
                if preserve:
                    self.conn.execute("SET forgea.rollback_preserve = 'on'")
                self._set_timeout(local=False)
                try:
                    for step in m.steps:          # file order, as psql would
                        step.rollback(self.backend)
                finally:
                    if not self.conn.broken:
                        self.conn.execute("SET statement_timeout = 0")
                    if preserve:
                        self.conn.execute("RESET forgea.rollback_preserve")
                with self.backend.transaction():
                    self.unrecord(f, m)
        else:
            def run():
                with self.backend.transaction():
                    if preserve:
                        self.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
                    self._set_timeout(local=True)
                    m.process_steps(self.backend, "rollback")
                    self.conn.execute("SET LOCAL statement_timeout = 0")
                    self.unrecord(f, m)
        self._with_retries(f, "rolling back", run, path, text)
        self.say(f"rolled back {f.id} ({time.monotonic() - t0:.2f}s)")
        self.event("rolled_back", f.id)

    def probe_rollback(self, victims: list[MigrationFile], *, preserve: bool = False) -> None:
        """Run every transactional rollback of ``victims`` in ONE transaction, then
        ROLLBACK it: nothing changes, but any refusal (FM002: rows the old schema
        cannot hold) or other error shows up before the first file is really
        rolled back. Without the probe, a refusal by an older file would come after
        newer files had already been rolled back and committed, leaving e.g. a
        queue with jobs but without its guards. no-transaction rollbacks (DROP INDEX
        CONCURRENTLY) run in the probe without CONCURRENTLY, so that later files
        see the schema they will really see; a statement that still cannot run
        inside a transaction is skipped (savepoint). The probe holds the locks of
        the whole rollback until it ends: run rollbacks in a maintenance window."""
        current = None
        self.quiet = True   # the probe's NOTICEs (e.g. "archived N rows") are not real
        try:
            self.conn.execute("BEGIN")
            if preserve:
                self.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
            for f in victims:
                current = f
                if f.rollback_no_transaction:
                    self._probe_no_transaction(f)
                    continue
                self.conn.execute(f.rollback_sql or "SELECT 1")
        except psycopg.Error as e:
            path = current.rollback_relpath() if current else "(probe)"
            line, extra = describe_pg_error(e, file=path)
            self._reset_tx()
            if e.sqlstate == "FM002":
                raise RollbackRefused(
                    f"rollback refused before anything was changed: {line}", details=extra,
                    sqlstate=e.sqlstate)
            raise MigrationFailed(f"rollback probe failed, nothing was changed: {line}",
                                  sqlstate=e.sqlstate, file=path, details=extra)
        finally:
            self.quiet = False
            if not self.conn.closed and (self.conn.info.transaction_status
                                         != psycopg.pq.TransactionStatus.IDLE):
                self.conn.execute("ROLLBACK")

    def _probe_no_transaction(self, f: MigrationFile) -> None:
        for stmt in sqlparse.split(f.rollback_sql or ""):
            body = sqlparse.format(stmt, strip_comments=True).strip()
            if not body:
                continue
            self.conn.execute("SAVEPOINT harness_probe")
            try:
                self.conn.execute(re.sub(r"\bCONCURRENTLY\b", "", body, flags=re.I))
            except psycopg.errors.ActiveSqlTransaction:
                self.conn.execute("ROLLBACK TO SAVEPOINT harness_probe")
            self.conn.execute("RELEASE SAVEPOINT harness_probe")

    def drop_invalid_indexes(self, text: str) -> None:
        for name in created_indexes(text):
            row = self.conn.execute(
                "SELECT c.oid::regclass::text FROM pg_catalog.pg_index i "
                "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                "WHERE c.oid = to_regclass(%s) AND NOT i.indisvalid", (name,)).fetchone()
            if row:
                self.say(f"dropping INVALID index {row[0]} left by an interrupted run")
                self.conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


# ---------------------------------------------------------------------------
# public API

def _select_pending(files, st, to):
    applied_ids = {a["id"] for a in st["applied"]}
    target = find(files, to) if to else None
    pending = [f for f in files if f.id not in applied_ids
               and (target is None or f.version <= target.version)]
    return target, pending


def apply(target_dsn: str, to: str | None = None, *, dry_run: bool = False,
          preserve: bool = False, sql_root: Path | None = None, lock_timeout: str = "5s",
          statement_timeout: str = "0", progress: Progress | None = None,
          lock_wait: float = 30.0, err=None) -> ApplyResult:
    """Apply pending migrations (through ``to`` when given). See the module docstring."""
    files = load_chain(sql_root)
    result = ApplyResult(target=redact(target_dsn), dry_run=dry_run)
    if dry_run:
        with connect(target_dsn, lock_timeout=lock_timeout,
                     statement_timeout=statement_timeout) as conn:
            st = _compute_status(files, _read_state(conn), None)
            _refuse_if_unsafe(st)
            target, pending = _select_pending(files, st, to)
            for f in pending:
                if f.baseline:
                    d = adoption_check(conn, f)
                    if d:
                        raise AdoptionMismatch(
                            f"refusing to adopt: the live public schema differs from {f.id}",
                            details=d)
                    if d == []:
                        result.adopted.append(f.id)
                        continue
                result.planned.append(f.id)
        return result

    sess = _Session(target_dsn, lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout, progress=progress, err=err)
    try:
        sess.lock(lock_wait)
        st = _compute_status(files, _read_state(sess.conn), None)
        _refuse_if_unsafe(st)
        target, pending = _select_pending(files, st, to)
        adopt_baseline = False
        if pending and pending[0].baseline:
            d = adoption_check(sess.conn, pending[0])
            if d:
                raise AdoptionMismatch(
                    f"refusing to adopt: the live public schema differs from "
                    f"{pending[0].id}; nothing was changed", details=d)
            adopt_baseline = d == []
        if target is not None and not pending:
            sess.say(f"{target.id} is already applied; nothing to do")
        if pending or not st["applied"]:
            sess.ensure_bookkeeping()
        for f in pending:
            if f.baseline and adopt_baseline:
                sess.adopt(f)
                result.adopted.append(f.id)
                continue
            sess.apply_one(f, preserve=preserve)
            result.applied.append(f.id)
    finally:
        sess.close()
    return result


def rollback(target_dsn: str, *, to: str | None = None, steps: int | None = None,
             preserve: bool = False, sql_root: Path | None = None,
             lock_timeout: str = "5s", statement_timeout: str = "0",
             progress: Progress | None = None, lock_wait: float = 30.0,
             dry_run: bool = False, err=None) -> RollbackResult:
    """Roll back to ``to`` (it stays applied) or the ``steps`` newest migrations."""
    if (to is None) == (steps is None):
        raise UsageError("rollback needs exactly one of --to VERSION or --steps N")
    if steps is not None and steps < 1:
        raise UsageError("--steps must be at least 1")
    files = load_chain(sql_root)
    by_id = {f.id: f for f in files}
    result = RollbackResult(target=redact(target_dsn), dry_run=dry_run)
    sess = _Session(target_dsn, lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout, progress=progress, err=err)
    try:
        if not dry_run:
            sess.lock(lock_wait)
        state = _read_state(sess.conn)
        st = _compute_status(files, state, None)
        if st["unknown"]:
            raise RefusedError("refusing to roll back: the database has migrations this "
                               "tree does not know", details=[u["id"] for u in st["unknown"]])
        applied = [a["id"] for a in st["applied"]]
        if to is not None:
            target = find(files, to)
            if target.id not in applied:
                raise UsageError(f"{target.id} is not applied; cannot roll back to it")
            victims = [i for i in applied if by_id[i].version > target.version]
        else:
            victims = applied[-steps:] if steps <= len(applied) else list(applied)
            if steps > len(applied):
                raise UsageError(f"only {len(applied)} migrations are applied; "
                                 f"cannot roll back {steps}")
        victims.reverse()
        for mid in victims:
            if by_id[mid].baseline and state[mid]["adopted"]:
                raise RollbackRefused(
                    f"refusing to roll back {mid}: this database's baseline was adopted "
                    "(it is the production schema the pack started from, never dropped); "
                    "nothing was rolled back")
        for c in st["rollback_changed"]:
            if c["id"] in victims:
                sess.say(f"warning: {c['file']} changed since {c['id']} was applied")
        if dry_run:
            result.planned = victims
            return result
        sess.probe_rollback([by_id[m] for m in victims], preserve=preserve)
        for mid in victims:
            sess.rollback_one(by_id[mid], preserve=preserve)
            result.rolled_back.append(mid)
    finally:
        sess.close()
    return result


# ---------------------------------------------------------------------------
# plan

def plan(target_dsn: str, sql_root: Path | None = None, to: str | None = None) -> dict:
    """Pending migrations (read-only), with the adoption decision."""
    files = load_chain(sql_root)
    with connect(target_dsn) as conn:
        st = _compute_status(files, _read_state(conn), None)
        _refuse_if_unsafe(st)
        target, pending = _select_pending(files, st, to)
        adopt = False
        if pending and pending[0].baseline:
            d = adoption_check(conn, pending[0])
            if d:
                raise AdoptionMismatch(
                    f"refusing to adopt: the live public schema differs from {pending[0].id}",
                    details=d)
            adopt = d == []
        bookkeeping = bool(_read_state(conn)) or conn.execute(
            "SELECT to_regclass('_harness_migration') IS NOT NULL").fetchone()[0]
    return {"target": redact(target_dsn), "pending": pending, "adopt_baseline": adopt,
            "bookkeeping_exists": bookkeeping}


def _lit(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    return "'" + str(v).replace("'", "''") + "'"


BOOKKEEPING_SQL = f"""\
-- Bookkeeping tables (as the harness and yoyo-migrations 9 create them).
CREATE TABLE IF NOT EXISTS yoyo_lock (
    locked INT DEFAULT 1, ctime TIMESTAMP, pid INT NOT NULL, PRIMARY KEY (locked)
);
CREATE TABLE IF NOT EXISTS _yoyo_log (
    id VARCHAR(36), migration_hash VARCHAR(64), migration_id VARCHAR(255),
    operation VARCHAR(10), username VARCHAR(255), hostname VARCHAR(255),
    comment VARCHAR(255), created_at_utc TIMESTAMP, PRIMARY KEY (id)
);
CREATE TABLE IF NOT EXISTS _yoyo_version (
    version INT NOT NULL PRIMARY KEY, installed_at_utc TIMESTAMP
);
INSERT INTO _yoyo_version (version, installed_at_utc)
SELECT 2, now() AT TIME ZONE 'utc'
WHERE NOT EXISTS (SELECT 1 FROM _yoyo_version WHERE version = 2);
CREATE TABLE IF NOT EXISTS {MIGRATION_TABLE} (
    migration_hash VARCHAR(64), migration_id VARCHAR(255),
    applied_at_utc TIMESTAMP, PRIMARY KEY (migration_hash)
);
{HARNESS_TABLE_DDL.strip()};
"""


def bookkeeping_sql(f: MigrationFile, *, adopted: bool = False) -> str:
    h = get_migration_hash(f.id)
    op = "mark" if adopted else "apply"
    return (
        f"INSERT INTO {MIGRATION_TABLE} (migration_hash, migration_id, applied_at_utc)\n"
        f"VALUES ({_lit(h)}, {_lit(f.id)}, now() AT TIME ZONE 'utc');\n"
        "INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username, "
        "hostname, created_at_utc)\n"
        f"VALUES (md5(random()::text || clock_timestamp()::text), {_lit(h)}, {_lit(f.id)}, "
        f"{_lit(op)}, current_user, 'psql', now() AT TIME ZONE 'utc');\n"
        "INSERT INTO _harness_migration (migration_id, checksum, rollback_checksum, "
        "adopted, no_transaction)\n"
        f"VALUES ({_lit(f.id)}, {_lit(f.checksum)}, {_lit(f.rollback_checksum)}, "
        f"{_lit(adopted)}, {_lit(f.no_transaction)});\n")


def plan_sql(p: dict) -> str:
    """One psql script (``psql -v ON_ERROR_STOP=1 -f``) doing what apply would do."""
    out = [f"-- harness plan for {p['target']}",
           f"-- {len(p['pending'])} pending migration(s); review, then run with:",
           "--   psql -v ON_ERROR_STOP=1 -f plan.sql",
           "-- Each transactional file runs in BEGIN/COMMIT together with its bookkeeping;",
           "-- no-transaction files run outside a transaction, then are recorded.",
           "-- Note: run by psql, there is no advisory lock, drift check or 55P03 retry.",
           "\\set ON_ERROR_STOP on",
           "SET application_name = 'harness-plan';", ""]
    if not p["pending"]:
        out.append("-- nothing to do")
        return "\n".join(out) + "\n"
    out += ["BEGIN;", BOOKKEEPING_SQL.rstrip(), "COMMIT;", ""]
    for f in p["pending"]:
        out.append(f"-- ===== {f.id} ({f.relpath()}, sha256 {f.checksum})")
        if f.baseline and p["adopt_baseline"]:
            out += ["-- ADOPTED: the live schema matches the baseline; recorded, not run.",
                    "BEGIN;", bookkeeping_sql(f, adopted=True).rstrip(), "COMMIT;", ""]
            continue
        body = f.sql if f.sql.endswith("\n") else f.sql + "\n"
        if f.no_transaction:
            out += ["-- no-transaction file: statements run in autocommit mode", body.rstrip(),
                    "BEGIN;", bookkeeping_sql(f).rstrip(), "COMMIT;", ""]
        else:
            out += ["BEGIN;", body.rstrip(), "", "-- bookkeeping", bookkeeping_sql(f).rstrip(),
                    "COMMIT;", ""]
    return "\n".join(out) + "\n"
