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
    (``drift``) and rollback files changed since (``rollback_changed``);
    ``apply`` refuses to run while any applied file drifted, ``rollback`` too
    and also while the rollback file of any file it would roll back changed
    (the probe and the run would execute an edited file).

Locking
    yoyo's lock row (``yoyo_lock``) survives a crashed run. The harness instead
    holds a session-level advisory lock (``pg_try_advisory_lock``) on the
    migration connection for the whole run: it vanishes with the session when the
    process dies (or its backend is terminated). A second run waits up to
    ``lock_wait`` seconds, then stops naming the holder's pid.

Sessions and lock retries
    Every migration session runs with ``application_name = 'harness'``,
    ``lock_timeout`` (default 100ms) and ``statement_timeout`` (default 0). Locks
    are taken the way GitLab's ``with_lock_retries`` takes them: a statement
    waits at most ``lock_timeout`` for a lock (so the application queues behind
    the migration's lock request at most that long), and a step that fails only
    with ``lock_not_available`` (55P03) is rolled back and retried, up to
    ``lock_retries`` times (default 40), sleeping an exponentially growing delay
    (0.1 s doubling, capped at ``retry_max_delay``, default 10 s) with jitter
    (half of it random) in between. From the first failure on, a second
    connection watches ``pg_blocking_pids()`` of the migration session, so each
    retry line and the final report name the sessions in the way (pid,
    application, state, how long their transaction has been open, the locks they
    hold). When the window never comes the run stops (exit 3) at a recorded
    version, saying so. ``CREATE/DROP INDEX CONCURRENTLY`` statements are the
    exception: they wait for running transactions while holding only SHARE
    UPDATE EXCLUSIVE, which no application statement queues behind, so they run
    with ``concurrent_lock_timeout`` (default 5min) instead of being rebuilt
    (and leaving an INVALID index) every time a report is open. Server NOTICEs
    are printed to stderr as they arrive.

A run of several files
    Each file commits on its own, so a run that stops half-way (a refusal, a
    lock window that never came, an error) leaves the files before it applied
    (or rolled back). The error then says which files this run committed and
    re-reads the bookkeeping to name the version the database is at now (and
    any incomplete file); a file's own HINT saying "Nothing was changed" is
    narrowed to that file. A refusal by a file (FM001 pre-flight, FM002
    rollback) exits 3 wherever it is raised, in the rollback probe or in the
    real run (rows the application wrote after the probe).

``-- harness: no-transaction`` files and their recovery story
    Such files (``CREATE INDEX CONCURRENTLY`` ...) cannot run in a transaction.
    Their statements run one by one in autocommit mode, so the bookkeeping must
    never disagree with what already committed: before the first statement the
    file is recorded as in progress (``_harness_migration.state`` = 'applying',
    or 'rolling_back' for a rollback, which also stops it counting as applied),
    and only after the last one is it recorded as complete (yoyo's mark and
    ``state`` = 'applied'; for a rollback every record removed), in one
    transaction. If the run dies or the final bookkeeping write fails,
    ``status`` lists the file under ``incomplete`` (and among ``pending``, not
    ``applied``); the next ``apply`` runs it again from the top (after finishing
    an interrupted rollback with the rollback file), the next ``rollback`` runs
    its rollback file and removes the records. Both files are written to be
    rerun from the top (``IF NOT EXISTS``, backfills that resume); a failed
    ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index behind, which ``IF NOT
    EXISTS`` would happily keep, so before (re-)running such a file the harness
    drops every INVALID index the file creates (``DROP INDEX CONCURRENTLY IF
    EXISTS``).

Adoption
    When ``V0001`` (the ``-- harness: baseline`` file) is not recorded but the
    ``public`` schema already holds objects (production built by Prisma), the
    harness compares the live catalog with the catalog the baseline creates (run
    in a scratch schema inside a transaction that is rolled back; no CREATEDB
    needed). Identical: the baseline is recorded as applied and *adopted*
    without running it, and the rest is applied. Different: refuse, change
    nothing, list the differences. An adopted baseline is never rolled back.

Where the bookkeeping lives
    Every bookkeeping table (yoyo's ``_yoyo_migration``, ``_yoyo_log``,
    ``_yoyo_version``, ``yoyo_lock`` and our ``_harness_migration``) lives in the
    schema ``harness`` (:data:`BOOKKEEPING_SCHEMA`), out of ``public`` where
    Prisma and every introspection of the application's schema would see it, the
    way sqitch keeps its registry in a ``sqitch`` schema. The migration
    connection keeps its ordinary ``search_path`` (``"$user", public``), so the
    files create their objects in ``public`` unqualified, exactly as with psql;
    instead every bookkeeping statement names its table schema-qualified: ours
    directly, yoyo's through ``_Backend``, which overrides the ``*_table_quoted``
    names yoyo builds its SQL from (yoyo quotes a table name as one identifier,
    so ``migration_table = "harness._yoyo_migration"`` would not work, and yoyo's
    ``?schema=`` URI option would move the migrations' own objects too). yoyo's
    own table management (``init_database``, ``ensure_internal_schema_updated``)
    looks for its tables in ``current_schema``, i.e. ``public``, and would create
    them there, so the harness never calls it: :meth:`_Session.ensure_bookkeeping`
    creates the same tables (yoyo 9's DDL, :data:`BOOKKEEPING_SQL`, which ``plan
    --sql`` prints as well) in the bookkeeping schema. ``yoyo list --database
    'postgresql://...?schema=harness'`` still reads them.

    A database migrated by an earlier harness has these tables in ``public``.
    The first ``apply`` or ``rollback`` that holds the migration lock moves them
    (``ALTER TABLE ... SET SCHEMA``, rows, indexes and history kept) in one
    transaction; until then the read-only commands (``status``, ``plan``,
    ``verify``) read them where they are. The migration owner creates the schema,
    which needs CREATE on the database; without it the harness refuses (exit 3),
    naming the grant to give or the ``CREATE SCHEMA ... AUTHORIZATION`` a DBA can
    run instead. It never falls back to ``public``: the bookkeeping has one home.
    The schema is the owner's alone: no grant to PUBLIC or the group roles
    (``harness verify`` fails on any).

Nothing is created in the database before the lock is held, the chain has been
checked, drift has been ruled out and adoption has been decided.
"""

from __future__ import annotations

import contextlib
import getpass
import random
import re
import socket
import string
import sys
import threading
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
from .errors import (AdoptionMismatch, ChainError, DriftError, HarnessError, LockHeld,
                     LockNotGranted, MigrationFailed, PreflightRefused, RefusedError,
                     RollbackRefused, ServerUnavailable, UsageError, describe_pg_error)

#: advisory lock key of the harness (per database): 'FRG1'
LOCK_KEY = 0x46524731
#: the schema that holds every bookkeeping table (see "Where the bookkeeping lives")
BOOKKEEPING_SCHEMA = "harness"
#: where an earlier harness (and yoyo by default) kept them
LEGACY_SCHEMA = "public"
MIGRATION_TABLE = "_yoyo_migration"
HARNESS_TABLE = "_harness_migration"
#: every bookkeeping table; yoyo's probe tables ``yoyo_tmp_*`` are bookkeeping too
BOOKKEEPING_TABLES = (MIGRATION_TABLE, "_yoyo_log", "_yoyo_version", "yoyo_lock",
                      HARNESS_TABLE)
#: lock_timeout of each attempt: the longest the application queues behind a
#: lock request of the migration (see "Sessions and lock retries")
DEFAULT_LOCK_TIMEOUT = "100ms"
#: lock_timeout of CREATE/DROP INDEX CONCURRENTLY and REINDEX CONCURRENTLY: they wait
#: for running transactions, but hold only SHARE UPDATE EXCLUSIVE, which no
#: application statement queues behind, so a short timeout would only throw away
#: a build (and leave an INVALID index) each time a report is open
DEFAULT_CONCURRENT_LOCK_TIMEOUT = "5min"
#: retries of a step that failed on lock_not_available (read at call time)
MAX_LOCK_RETRIES = 40
#: first backoff delay (doubling per retry, half of it random) and its cap, seconds
RETRY_BASE_DELAY = 0.1
RETRY_MAX_DELAY = 10.0


def bk(table: str) -> str:
    """``harness."table"``: a bookkeeping table, schema-qualified, for SQL text."""
    return f'{BOOKKEEPING_SCHEMA}."{table}"'


HARNESS_TABLE_DDL = f"""
CREATE TABLE IF NOT EXISTS {bk(HARNESS_TABLE)} (
    migration_id      text PRIMARY KEY,
    checksum          text NOT NULL,
    rollback_checksum text,
    adopted           boolean NOT NULL DEFAULT false,
    no_transaction    boolean NOT NULL DEFAULT false,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    applied_by        text NOT NULL DEFAULT current_user,
    state             text NOT NULL DEFAULT 'applied'
                      CONSTRAINT _harness_migration_state_check
                      CHECK (state IN ('applied', 'applying', 'rolling_back'))
)"""

#: ``_harness_migration.state``: 'applied', or a no-transaction file whose statements
#: have started to commit but whose last one has not been recorded yet: 'applying'
#: (no yoyo mark yet) or 'rolling_back' (the yoyo mark is still there). Added to
#: tables an earlier harness created (catalog-only ADD COLUMN with a default).
STATES = ("applied", "applying", "rolling_back")
STATE_COLUMN_DDL = (
    f"ALTER TABLE {bk(HARNESS_TABLE)} ADD COLUMN IF NOT EXISTS state text NOT NULL "
    f"DEFAULT 'applied' CONSTRAINT _harness_migration_state_check "
    f"CHECK (state IN ({', '.join(repr(x) for x in STATES)}))")

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


def connect(dsn: str, *, lock_timeout=DEFAULT_LOCK_TIMEOUT, statement_timeout="0",
            autocommit=True):
    """A plain psycopg connection with the harness session settings."""
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name="harness",
                               options=_session_options(lock_timeout, statement_timeout))
    except psycopg.OperationalError as e:
        raise ServerUnavailable(f"cannot connect to {redact(dsn)}: {str(e).strip()}")
    return conn


class _Backend(PostgresqlPsycopgBackend):
    """yoyo's psycopg 3 backend writing to the bookkeeping schema.

    yoyo formats its SQL with ``{0.migration_table_quoted}``, ``log_table_quoted``,
    ``lock_table_quoted`` and ``version_table_quoted`` (built by ``__getattr__``
    from the bare names); these properties return schema-qualified names instead,
    so ``mark_one`` / ``unmark_one`` / ``log_migration`` write to
    ``harness._yoyo_migration`` and ``harness._yoyo_log`` whatever the connection's
    search_path. yoyo's table management is switched off (see the module
    docstring): PostgreSQL has transactional DDL, and ``ensure_bookkeeping``
    creates the tables. Also caches the host name for ``_yoyo_log``.
    """

    _hostname: str | None = None
    has_transactional_ddl = True

    def _qualified(self, table: str) -> str:
        return f"{self.quote_identifier(BOOKKEEPING_SCHEMA)}.{self.quote_identifier(table)}"

    @property
    def migration_table_quoted(self) -> str:
        return self._qualified(self.migration_table)

    @property
    def log_table_quoted(self) -> str:
        return self._qualified(self.log_table)

    @property
    def lock_table_quoted(self) -> str:
        return self._qualified(self.lock_table)

    @property
    def version_table_quoted(self) -> str:
        return self._qualified(self.version_table)

    def init_database(self):
        raise NotImplementedError("the harness creates the bookkeeping (ensure_bookkeeping)")

    def ensure_internal_schema_updated(self):
        """No-op: yoyo would look for (and create) its tables in current_schema."""

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
# state

def bookkeeping_tables(conn) -> dict[str, list[str]]:
    """Bookkeeping tables that exist, by schema (bookkeeping schema and ``public``)."""
    out: dict[str, list[str]] = {}
    for nsp, rel in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') "
            "AND (c.relname = ANY(%s) OR c.relname LIKE 'yoyo\\_tmp\\_%%') ORDER BY 1, 2",
            ([BOOKKEEPING_SCHEMA, LEGACY_SCHEMA], list(BOOKKEEPING_TABLES))).fetchall():
        out.setdefault(nsp, []).append(rel)
    return out


def bookkeeping_schema(conn) -> str | None:
    """Where the bookkeeping is read from: the bookkeeping schema, ``public`` for a
    database an earlier harness migrated (not moved yet), None when there is none."""
    found = bookkeeping_tables(conn)
    for nsp in (BOOKKEEPING_SCHEMA, LEGACY_SCHEMA):
        if {MIGRATION_TABLE, HARNESS_TABLE} & set(found.get(nsp, ())):
            return nsp
    return None


def _read_state(conn) -> dict[str, dict]:
    """Applied migrations by id (empty when the bookkeeping tables are missing)."""
    state: dict[str, dict] = {}
    schema = bookkeeping_schema(conn)
    if schema is None:
        return state
    cur = conn.cursor()
    cur.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (f'{schema}."{MIGRATION_TABLE}"', f'{schema}."{HARNESS_TABLE}"'))
    has_yoyo, has_harness = cur.fetchone()
    if not has_yoyo:
        return state
    cur.execute(f'SELECT migration_id, applied_at_utc FROM {schema}."{MIGRATION_TABLE}" '
                "ORDER BY applied_at_utc, migration_id")
    for mid, at in cur.fetchall():
        state[mid] = {"id": mid, "applied_at": at.replace(tzinfo=timezone.utc).isoformat()
                      if at else None, "checksum": None, "rollback_checksum": None,
                      "adopted": False, "state": "applied"}
    if has_harness:
        has_state = cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
            "to_regclass(%s) AND attname = 'state' AND NOT attisdropped)",
            (f'{schema}."{HARNESS_TABLE}"',)).fetchone()[0]
        cur.execute("SELECT migration_id, checksum, rollback_checksum, adopted, applied_at, "
                    + ("state " if has_state else "'applied' ")
                    + f'FROM {schema}."{HARNESS_TABLE}"')
        for mid, cs, rcs, adopted, at, st in cur.fetchall():
            if mid not in state and st != "applying":
                continue    # a row without yoyo mark: only an interrupted apply has one
            rec = state.setdefault(mid, {"id": mid, "applied_at": None})
            rec.update(checksum=cs, rollback_checksum=rcs, adopted=adopted, state=st,
                       applied_at=at.isoformat() if at else rec["applied_at"])
    return state


def _compute_status(files: list[MigrationFile], state: dict[str, dict], root: Path | None):
    by_id = {f.id: f for f in files}
    applied, pending, drift, unknown, rb_changed = [], [], [], [], []
    incomplete = []
    for f in files:
        rec = state.get(f.id)
        done = rec is not None and rec["state"] == "applied"
        if not done:
            op = None
            if rec is not None:
                # a no-transaction file interrupted half-way: neither applied nor
                # clean; apply redoes it (after finishing an interrupted rollback),
                # rollback undoes it
                op = "apply" if rec["state"] == "applying" else "rollback"
                incomplete.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                                   "operation": op, "since": rec["applied_at"]})
            pending.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                            "checksum": f.checksum, "no_transaction": f.no_transaction,
                            "baseline": f.baseline, "incomplete": op})
        else:
            applied.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                            "checksum": rec["checksum"], "applied_at": rec["applied_at"],
                            "adopted": rec["adopted"]})
        if rec is None:
            continue
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
            "incomplete": incomplete,
            "current": applied[-1]["id"] if applied else None}


def status(target_dsn: str, sql_root: Path | None = None) -> dict:
    """CONTRACT 8: ``applied`` / ``pending`` / ``drift`` lists (oldest first).

    Read-only: works (everything pending) on a database without bookkeeping.
    """
    files = load_chain(sql_root)
    root = Path(sql_root).parent if sql_root else None
    with connect(target_dsn) as conn:
        state = _read_state(conn)
        schema = bookkeeping_schema(conn)
        server_version = conn.info.server_version
    out = _compute_status(files, state, root)
    out["target"] = redact(target_dsn)
    out["server_version"] = server_version
    # where the bookkeeping was read: the bookkeeping schema; "public" for a database
    # an earlier harness migrated (the next apply or rollback moves it); None: none yet
    out["bookkeeping_schema"] = schema
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
# lock retries

@dataclass(frozen=True)
class LockRetry:
    """How a step that hits ``lock_timeout`` is retried (see the module docstring).

    ``retries`` and ``base_delay`` default to :data:`MAX_LOCK_RETRIES` and
    :data:`RETRY_BASE_DELAY` as they are when the policy is built."""

    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    retries: int | None = None
    max_delay: float = RETRY_MAX_DELAY
    base_delay: float | None = None
    concurrent_lock_timeout: str = DEFAULT_CONCURRENT_LOCK_TIMEOUT

    def __post_init__(self):
        if self.retries is None:
            object.__setattr__(self, "retries", MAX_LOCK_RETRIES)
        if self.base_delay is None:
            object.__setattr__(self, "base_delay", RETRY_BASE_DELAY)
        if self.retries < 0:
            raise UsageError(f"--lock-retries must be 0 or more, got {self.retries}")
        if not self.max_delay > 0:
            raise UsageError(f"--lock-retry-max-delay must be positive, got {self.max_delay}")

    def delay(self, retry: int) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based): exponential,
        capped, half of it random ("equal jitter"), so that several waiters
        (or a waiter and a periodic blocker) do not stay in step."""
        d = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return d / 2 + random.uniform(0, d / 2)



class _BlockerWatch:
    """Who keeps the migration session waiting for a lock.

    A second connection (``application_name = 'harness-lock-watch'``) polls
    ``pg_blocking_pids()`` of the migration backend every 10 ms while an attempt
    runs, and keeps what it saw of each blocker: the sessions holding (or queued
    ahead for) a conflicting lock. Opened at the first lock timeout of a run."""

    QUERY = """
        SELECT a.pid, a.application_name, a.usename, a.state,
               extract(epoch FROM clock_timestamp() - a.xact_start)::float8,
               left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), 160),
               (SELECT string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', ')
                FROM pg_catalog.pg_locks AS l
                WHERE l.pid = a.pid AND l.granted AND l.relation IS NOT NULL
                  AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                    WHERE datname = current_database()))
        FROM pg_catalog.pg_stat_activity AS a
        WHERE a.pid = ANY (pg_catalog.pg_blocking_pids(%s))"""

    def __init__(self, dsn: str, pid: int):
        self.pid = pid
        self.seen: dict[int, dict] = {}      # every blocker of this run, last sighting
        self.attempt: dict[int, dict] = {}   # blockers of the current attempt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.conn = psycopg.connect(dsn, autocommit=True,
                                    application_name="harness-lock-watch",
                                    options="-c lock_timeout=1s -c statement_timeout=5s")

    @contextlib.contextmanager
    def watching(self):
        self.attempt = {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="harness-lock-watch",
                                        daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(timeout=5)

    def _run(self):
        while not self._stop.is_set():
            try:
                for pid, app, user, state, age, query, locks in self.conn.execute(
                        self.QUERY, (self.pid,)).fetchall():
                    info = {"pid": pid, "application_name": app, "user": user,
                            "state": state, "xact_age_s": age, "query": query,
                            "locks": locks}
                    self.attempt[pid] = info
                    self.seen[pid] = info
            except psycopg.Error:
                return
            self._stop.wait(0.01)

    @staticmethod
    def describe(info: dict) -> str:
        """One line per blocker. A migration role without ``pg_read_all_stats``
        sees no state, transaction start or query of other roles' sessions (the
        locks it does see)."""
        state = info.get("state") or "state hidden (grant pg_read_all_stats to see it)"
        age = (f", transaction open {info['xact_age_s']:.1f}s"
               if info.get("xact_age_s") is not None else "")
        locks = f", holds {info['locks']}" if info.get("locks") else ""
        q = info.get("query")
        query = f"; last query: {q}" if q and q != "<insufficient privilege>" else ""
        return (f"pid {info['pid']} (application_name {info['application_name']!r}, "
                f"user {info['user']!r}, {state}{age}{locks}){query}")

    def close(self):
        self._stop.set()
        try:
            self.conn.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# the migration session

class _Session:
    def __init__(self, dsn, *, lock_timeout=DEFAULT_LOCK_TIMEOUT, statement_timeout="0",
                 progress=None, err=None, retry: LockRetry | None = None):
        self.dsn = dsn
        self.retry = retry or LockRetry(lock_timeout=str(lock_timeout))
        self.watch: _BlockerWatch | None = None
        self.watch_failed = False
        self.stmts_done = 0   # statements of the current no-transaction file committed
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
            # yoyo_lock (in public) before we hold our lock and before adoption is
            # decided; build the same backend object, and ensure_bookkeeping()
            # creates the tables in the bookkeeping schema later.
            self.backend = _Backend(parse_uri(uri), MIGRATION_TABLE)
        except psycopg.OperationalError as e:
            raise ServerUnavailable(f"cannot connect to {redact(dsn)}: {str(e).strip()}")
        self.conn: psycopg.Connection = self.backend.connection
        self.conn.add_notice_handler(self._notice)
        self.locked = False
        self.quiet = False
        self.bk_step: str | None = None   # the bookkeeping table being written, if any

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
        if self.watch is not None:
            self.watch.close()
            self.watch = None
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
        """The bookkeeping schema with every table in it, in ONE transaction under
        the migration lock: created on a new database; on a database an earlier
        harness migrated, its tables are moved out of ``public`` (ALTER TABLE ...
        SET SCHEMA keeps rows, indexes and ACLs); a no-op once in place."""
        assert self.locked
        self.backend._is_locked = True      # yoyo's lock row is never used: we hold ours
        found = bookkeeping_tables(self.conn)
        legacy = found.get(LEGACY_SCHEMA, [])
        present = found.get(BOOKKEEPING_SCHEMA, [])
        if not legacy and set(present) >= set(BOOKKEEPING_TABLES) and self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
                "to_regclass(%s) AND attname = 'state' AND NOT attisdropped)",
                (bk(HARNESS_TABLE),)).fetchone()[0]:
            return
        if legacy and present:
            raise RefusedError(
                f"refusing to proceed: bookkeeping tables exist both in schema "
                f"{BOOKKEEPING_SCHEMA} and in {LEGACY_SCHEMA}; nothing was changed",
                details=[f"{nsp}.{t}: {self._count(nsp, t)} row(s)"
                         for nsp in (BOOKKEEPING_SCHEMA, LEGACY_SCHEMA) for t in found[nsp]]
                + [f"the {BOOKKEEPING_SCHEMA} schema is the live one; tables left in "
                   f"{LEGACY_SCHEMA} were most likely created by an older harness run "
                   "against this database: if they are empty, drop them"])
        schema_exists = self._check_schema_privileges()
        try:
            with self.backend.transaction():
                # CREATE TABLE IF NOT EXISTS would print "already exists, skipping"
                self.conn.execute("SET LOCAL client_min_messages = warning")
                if not schema_exists:
                    self.conn.execute(f"CREATE SCHEMA {BOOKKEEPING_SCHEMA}")
                for t in legacy:
                    self.conn.execute(f'ALTER TABLE {LEGACY_SCHEMA}."{t}" '
                                      f"SET SCHEMA {BOOKKEEPING_SCHEMA}")
                self.conn.execute(BOOKKEEPING_SQL)
        except psycopg.Error as e:
            self._reset_tx()
            line, extra = describe_pg_error(e)
            what = (f"moving the bookkeeping from {LEGACY_SCHEMA} to schema "
                    f"{BOOKKEEPING_SCHEMA}" if legacy else
                    f"creating the bookkeeping in schema {BOOKKEEPING_SCHEMA}")
            raise MigrationFailed(f"{what} failed, nothing was changed: {line}",
                                  sqlstate=e.sqlstate, details=extra)
        if legacy:
            self.say(f"moved the harness bookkeeping from schema {LEGACY_SCHEMA} to "
                     f"schema {BOOKKEEPING_SCHEMA}: {', '.join(legacy)}")

    def _count(self, schema: str, table: str) -> int:
        return self.conn.execute(f'SELECT count(*) FROM {schema}."{table}"').fetchone()[0]

    def _check_schema_privileges(self) -> bool:
        """Whether the bookkeeping schema exists; refuse (exit 3) when the migration
        role can neither create it nor create tables in it."""
        row = self.conn.execute(
            "SELECT pg_catalog.pg_get_userbyid(nspowner), "
            "pg_catalog.has_schema_privilege(oid, 'USAGE') AND "
            "pg_catalog.has_schema_privilege(oid, 'CREATE') "
            "FROM pg_catalog.pg_namespace WHERE nspname = %s",
            (BOOKKEEPING_SCHEMA,)).fetchone()
        me, db = self.conn.execute("SELECT current_user, current_database()").fetchone()
        if row is None:
            if not self.conn.execute("SELECT pg_catalog.has_database_privilege("
                                     "current_database(), 'CREATE')").fetchone()[0]:
                raise RefusedError(
                    f"the migration role {me} cannot create the bookkeeping schema "
                    f"{BOOKKEEPING_SCHEMA}: it needs the CREATE privilege on database "
                    f"{db}; nothing was changed",
                    details=[f'either: GRANT CREATE ON DATABASE "{db}" TO "{me}";',
                             f'or, as a role that has it: CREATE SCHEMA {BOOKKEEPING_SCHEMA} '
                             f'AUTHORIZATION "{me}";'])
            return False
        owner, usable = row
        if not usable:
            raise RefusedError(
                f"the migration role {me} lacks USAGE or CREATE on the bookkeeping schema "
                f"{BOOKKEEPING_SCHEMA} (owner {owner}); nothing was changed",
                details=[f'ALTER SCHEMA {BOOKKEEPING_SCHEMA} OWNER TO "{me}";  '
                         "-- as its owner or a superuser"])
        if owner != me:
            self.say(f"warning: schema {BOOKKEEPING_SCHEMA} is owned by {owner}, not by the "
                     f"migration role {me}; its owner can drop or alter the bookkeeping")
        return True

    def record(self, f: MigrationFile, m: Migration, *, adopted: bool) -> None:
        """Mark ``f`` applied (yoyo's mark and log, our row with state 'applied')."""
        b = self.backend
        self.bk_step = bk(MIGRATION_TABLE)
        b.mark_one(m, log=False)
        self.bk_step = bk("_yoyo_log")
        b.log_migration(m, "mark" if adopted else "apply")
        self.bk_step = bk(HARNESS_TABLE)
        self.conn.execute(
            f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
            "adopted, no_transaction, state) VALUES (%s, %s, %s, %s, %s, 'applied') "
            "ON CONFLICT (migration_id) DO UPDATE SET checksum = EXCLUDED.checksum, "
            "rollback_checksum = EXCLUDED.rollback_checksum, adopted = EXCLUDED.adopted, "
            "no_transaction = EXCLUDED.no_transaction, applied_at = now(), "
            "applied_by = current_user, state = 'applied'",
            (f.id, f.checksum, f.rollback_checksum, adopted, f.no_transaction))
        self.bk_step = None

    def unrecord(self, f: MigrationFile, m: Migration) -> None:
        """Remove every record of ``f`` (yoyo's mark, our row); log the rollback."""
        b = self.backend
        self.bk_step = bk(MIGRATION_TABLE)
        b.unmark_one(m, log=False)
        self.bk_step = bk("_yoyo_log")
        b.log_migration(m, "rollback")
        self.bk_step = bk(HARNESS_TABLE)
        self.conn.execute(f"DELETE FROM {bk(HARNESS_TABLE)} WHERE migration_id = %s", (f.id,))
        self.bk_step = None

    def mark_in_progress(self, f: MigrationFile, state: str) -> None:
        """Before the first statement of a no-transaction file: our row says
        'applying' (no yoyo mark: the file does not count as applied) or
        'rolling_back' (it no longer counts as applied either)."""
        assert state in ("applying", "rolling_back")
        self.bk_step = bk(HARNESS_TABLE)
        self.conn.execute(
            f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
            "no_transaction, state) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (migration_id) DO UPDATE SET state = EXCLUDED.state, "
            "applied_at = now(), applied_by = current_user",
            (f.id, f.checksum, f.rollback_checksum, f.no_transaction, state))
        self.bk_step = None

    # running ----------------------------------------------------------------
    def _reset_tx(self):
        b = self.backend
        if b._in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            b._in_transaction = False

    def _start_watch(self) -> None:
        if self.watch is None and not self.watch_failed:
            try:
                self.watch = _BlockerWatch(self.dsn, self.conn.info.backend_pid)
            except psycopg.Error:
                self.watch_failed = True    # no second connection: retry without names

    def _attempt(self, fn):
        if self.watch is None:
            return fn()
        with self.watch.watching():
            return fn()

    def blockers(self, *, current: bool) -> list[str]:
        if self.watch is None:
            return []
        seen = self.watch.attempt if current else self.watch.seen
        return [_BlockerWatch.describe(i) for i in seen.values()]

    def retry_on_lock(self, label: str, fn, on_error):
        """Run ``fn``; on lock_not_available (55P03) roll back and retry it with
        the backoff of :class:`LockRetry`, naming the blockers; when the retries
        run out raise what ``on_error(exc, exhausted=True)`` returns. Any other
        psycopg error goes to ``on_error(exc, exhausted=False)``."""
        retry = self.retry
        attempt = 0
        t0 = time.monotonic()
        while True:
            attempt += 1
            self.bk_step = None
            try:
                return self._attempt(fn)
            except psycopg.Error as e:
                self._reset_tx()
                lost = self.conn.closed or self.conn.broken
                if lost or e.sqlstate != "55P03":
                    raise on_error(e, exhausted=False) from e
                self._start_watch()
                if attempt > retry.retries:
                    raise on_error(e, exhausted=True, attempts=attempt,
                                   waited=time.monotonic() - t0) from e
                delay = retry.delay(attempt)
                who = self.blockers(current=True)
                self.say(f"{label}: lock not available within lock_timeout "
                         f"{retry.lock_timeout} (55P03: "
                         f"{(e.diag.message_primary or '').strip()})"
                         + (f"; blocked by {'; '.join(who)}" if who else "")
                         + f"; retry {attempt}/{retry.retries} in {delay:.2f}s")
                self.event("retry", label)
                time.sleep(delay)

    def lock_not_granted(self, head: str, e: psycopg.Error, attempts: int, waited: float,
                         *, file: str | None, after: list[str]) -> LockNotGranted:
        who = self.blockers(current=False)
        r = self.retry
        return LockNotGranted(
            f"{head}: the locks it needs were not granted in {attempts} attempt(s) over "
            f"{waited:.1f}s (lock_timeout {r.lock_timeout} each; every attempt was "
            f"rolled back, so the application waited at most that long per attempt)",
            sqlstate=e.sqlstate, file=file,
            details=(["sessions in the way: " + w for w in who] if who else
                     ["no blocker was caught in the act (it released its lock between "
                      "attempts, or the lock watch could not connect)"])
            + after
            + ["when they are gone, run the same command again; or end them: "
               "SELECT pg_terminate_backend(PID);  --lock-retries and "
               "--lock-retry-max-delay wait longer, --lock-timeout makes each attempt "
               "(and the application's wait behind it) longer"])

    def _with_retries(self, f: MigrationFile, what: str, fn, path_for_error: str, text: str,
                      *, state_after=None):
        """Run ``fn`` under :meth:`retry_on_lock`. ``state_after``: what a failure
        leaves committed (a string, or a function returning one), added to the
        error. A failure while writing the bookkeeping names the bookkeeping
        table, not a line of the file."""

        def on_error(e, *, exhausted, attempts=0, waited=0.0):
            lost = self.conn.closed or self.conn.broken
            st = state_after() if callable(state_after) else state_after
            after = [st] if st else []
            if lost:    # a COMMIT may or may not have reached the server
                after = ["the connection was lost, so whether the last step committed "
                         "is unknown; `harness status` shows what is recorded"]
            if exhausted:
                head = (f"{what} {f.id}: writing the bookkeeping ({self.bk_step}) failed"
                        if self.bk_step else f"{what} {f.id}")
                return self.lock_not_granted(
                    head, e, attempts, waited, after=after,
                    file=self.bk_step or path_for_error)
            if self.bk_step:
                line, extra = describe_pg_error(e)
                return MigrationFailed(
                    f"{what} {f.id}: writing the bookkeeping ({self.bk_step}) failed"
                    + (" (connection lost)" if lost else "") + f": {line}",
                    sqlstate=e.sqlstate, file=self.bk_step, details=extra + after)
            if lost:
                line, extra = describe_pg_error(e, file=path_for_error)
                return MigrationFailed(f"{what} {f.id}: connection lost: {line}",
                                       sqlstate=e.sqlstate, file=path_for_error,
                                       details=extra + after)
            line, extra = describe_pg_error(e, file=path_for_error, sql=text)
            cls = PreflightRefused if e.sqlstate == "FM001" else MigrationFailed
            return cls(line, sqlstate=e.sqlstate, file=path_for_error, details=extra + after)

        return self.retry_on_lock(f.id, fn, on_error)

    def _set_timeout(self, *, local: bool) -> None:
        scope = "LOCAL " if local else ""
        self.conn.execute(f"SET {scope}statement_timeout = '{self.statement_timeout}'")

    def _check_file(self, f: MigrationFile, text: str, path: str) -> None:
        tc = transaction_control_statements(text)
        if tc:
            raise ChainError(f"{path}: contains transaction control ({', '.join(tc)}); "
                             "the harness runs each file in its own transaction")

    def _run_no_transaction(self, f: MigrationFile, direction: str, m: Migration, path: str,
                            text: str, preserve: bool) -> None:
        """A no-transaction file in three steps, so that the bookkeeping never
        disagrees with the schema: (1) record it as in progress, (2) run its
        statements one by one (autocommit), (3) record it as complete (applied, or
        gone). A failure or a crash after (1) leaves it *incomplete* (``status``
        says so); the next ``apply`` redoes it from the top, the next ``rollback``
        undoes it (both files are written to be rerun from the top). A retry after
        lock_not_available repeats only the step that failed."""
        what = "applying" if direction == "apply" else "rolling back"
        state = "applying" if direction == "apply" else "rolling_back"
        rel = f.relpath() if direction == "apply" else f.rollback_relpath()
        incomplete = (f"{f.id} is recorded as incomplete ({state}); `harness status` shows "
                      "it; `harness apply` redoes it from the top, `harness rollback` "
                      "undoes it")

        def start():
            with self.backend.transaction():
                self.mark_in_progress(f, state)

        def statements():
            self.stmts_done = 0
            self.drop_invalid_indexes(text)
            if preserve:
                self.conn.execute("SET forgea.rollback_preserve = 'on'")
            self._set_timeout(local=False)
            try:
                for step in m.steps:          # file order, as psql would
                    stmt = step._apply if direction == "apply" else step._rollback
                    with self.concurrent_timeout(isinstance(stmt, str) and is_concurrent(stmt)):
                        if direction == "apply":
                            step.apply(self.backend)
                        else:
                            step.rollback(self.backend)
                    self.stmts_done += 1
            finally:
                if not self.conn.broken:
                    self.conn.execute("SET statement_timeout = 0")
                    if preserve:
                        self.conn.execute("RESET forgea.rollback_preserve")

        def finish():
            with self.backend.transaction():
                if direction == "apply":
                    self.record(f, m, adopted=False)
                else:
                    self.unrecord(f, m)

        def partly():
            k, n = self.stmts_done, len(m.steps)
            return (f"{k} of the {n} statements of {rel} completed before statement "
                    f"{k + 1} failed (each commits on its own; a batched procedure keeps "
                    f"the batches it finished); {incomplete}")

        self._with_retries(f, what, start, path, text,
                           state_after=f"nothing of {rel} ran")
        self._with_retries(f, what, statements, path, text, state_after=partly)
        self._with_retries(f, what, finish, path, text,
                           state_after=f"every statement of {rel} committed; {incomplete}")

    def apply_one(self, f: MigrationFile, *, preserve: bool = False) -> None:
        path = f.relpath()
        self._check_file(f, f.sql, path)
        m = yoyo_migration(f, "apply")
        self.event("apply", f.id)
        t0 = time.monotonic()
        if f.no_transaction:
            self._run_no_transaction(f, "apply", m, path, f.sql, preserve)
        else:
            def run():
                with self.backend.transaction():
                    if preserve:
                        self.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
                    self._set_timeout(local=True)
                    m.process_steps(self.backend, "apply")   # savepoint inside our BEGIN
                    self.conn.execute("SET LOCAL statement_timeout = 0")
                    self.record(f, m, adopted=False)          # same transaction
            self._with_retries(f, "applying", run, path, f.sql, state_after=(
                f"nothing of {f.id} was committed (its statements and its bookkeeping "
                "share one transaction)"))
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
            self._run_no_transaction(f, "rollback", m, path, text, preserve)
        else:
            def run():
                with self.backend.transaction():
                    if preserve:
                        self.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
                    self._set_timeout(local=True)
                    m.process_steps(self.backend, "rollback")
                    self.conn.execute("SET LOCAL statement_timeout = 0")
                    self.unrecord(f, m)
            self._with_retries(f, "rolling back", run, path, text, state_after=(
                f"nothing of the rollback of {f.id} was committed (its statements and its "
                "bookkeeping share one transaction)"))
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
        the whole rollback until it ends (run rollbacks in a maintenance window);
        a lock timeout restarts it under the lock retry policy. What the
        application writes after the probe can still make a file refuse in the
        real run: the run then stops at a recorded version and says so."""
        current: list[MigrationFile | None] = [None]

        def probe():
            self.quiet = True   # the probe's NOTICEs (e.g. "archived N rows") are not real
            try:
                self.conn.execute("BEGIN")
                if preserve:
                    self.conn.execute("SET LOCAL forgea.rollback_preserve = 'on'")
                for f in victims:
                    current[0] = f
                    if f.rollback_no_transaction:
                        self._probe_no_transaction(f)
                        continue
                    self.conn.execute(f.rollback_sql or "SELECT 1")
            finally:
                self.quiet = False
                if not self.conn.closed and (self.conn.info.transaction_status
                                             != psycopg.pq.TransactionStatus.IDLE):
                    with contextlib.suppress(psycopg.Error):
                        self.conn.execute("ROLLBACK")

        def on_error(e, *, exhausted, attempts=0, waited=0.0):
            path = current[0].rollback_relpath() if current[0] else "(probe)"
            if exhausted:
                return self.lock_not_granted(
                    f"rollback probe ({path})", e, attempts, waited, file=path,
                    after=["the probe changes nothing: nothing was rolled back"])
            line, extra = describe_pg_error(e, file=path)
            if e.sqlstate == "FM002":
                return RollbackRefused(
                    f"rollback refused before anything was changed: {line}", details=extra,
                    sqlstate=e.sqlstate)
            return MigrationFailed(f"rollback probe failed, nothing was changed: {line}",
                                   sqlstate=e.sqlstate, file=path, details=extra)

        self.retry_on_lock("rollback probe", probe, on_error)

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

    @contextlib.contextmanager
    def concurrent_timeout(self, on: bool = True):
        """Run a CONCURRENTLY statement under the concurrent lock_timeout (see
        :data:`DEFAULT_CONCURRENT_LOCK_TIMEOUT`); the session's afterwards."""
        if not on:
            yield
            return
        self.conn.execute(pgsql.SQL("SET lock_timeout = {}").format(
            pgsql.Literal(self.retry.concurrent_lock_timeout)))
        try:
            yield
        finally:
            if not (self.conn.closed or self.conn.broken):
                self.conn.execute(pgsql.SQL("SET lock_timeout = {}").format(
                    pgsql.Literal(self.retry.lock_timeout)))

    def drop_invalid_indexes(self, text: str) -> None:
        for name in created_indexes(text):
            row = self.conn.execute(
                "SELECT c.oid::regclass::text FROM pg_catalog.pg_index i "
                "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                "WHERE c.oid = to_regclass(%s) AND NOT i.indisvalid", (name,)).fetchone()
            if row:
                self.say(f"dropping INVALID index {row[0]} left by an interrupted run")
                with self.concurrent_timeout():
                    self.conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


# ---------------------------------------------------------------------------
# public API

def _select_pending(files, st, to):
    applied_ids = {a["id"] for a in st["applied"]}
    target = find(files, to) if to else None
    pending = [f for f in files if f.id not in applied_ids
               and (target is None or f.version <= target.version)]
    return target, pending


def _retry_policy(lock_timeout, lock_retries, retry_max_delay,
                  concurrent_lock_timeout) -> LockRetry:
    _session_options(concurrent_lock_timeout, "0")      # validates the value
    return LockRetry(lock_timeout=str(lock_timeout).replace(" ", ""), retries=lock_retries,
                     max_delay=RETRY_MAX_DELAY if retry_max_delay is None
                     else float(retry_max_delay),
                     concurrent_lock_timeout=str(concurrent_lock_timeout).replace(" ", ""))


def _recorded_position(sess: _Session, files) -> tuple[str | None, list[dict], str | None]:
    """(last applied version, incomplete files, error) read from the bookkeeping
    after a run stopped; through a new connection when the session's is lost."""
    try:
        if sess.conn.closed or sess.conn.broken:
            with connect(sess.dsn) as conn:
                st = _compute_status(files, _read_state(conn), None)
        else:
            st = _compute_status(files, _read_state(sess.conn), None)
    except (psycopg.Error, HarnessError) as e:
        return None, [], str(e).strip().splitlines()[0]
    return st["current"], st["incomplete"], None


_NOTHING_CHANGED = re.compile(r"\b[Nn]othing (?:was )?changed\b\.?")


def _stopped(sess: _Session, files, e: HarnessError, direction: str, done: list[str],
             failing: str | None, probe_passed: bool = False) -> HarnessError:
    """The error of a run that stopped at ``failing``, told truthfully: what this
    run committed before it, the version the bookkeeping records now (re-read),
    any incomplete file, and the next step. A file's own "Nothing was changed"
    is narrowed to that file when earlier files of the run committed. A refusal
    by a file (FM001, FM002) becomes an exit-3 error wherever it was raised."""
    verb = "applied" if direction == "apply" else "rolled back"
    current, incomplete, unreadable = _recorded_position(sess, files)
    where = (f"the database is now at {current} (its last applied version)" if current
             else "the database now has no applied version" if not unreadable
             else f"the bookkeeping could not be read again ({unreadable}); "
                  "`harness status` shows where the database is")
    summary = [f"this run {verb} and committed {len(done)} file(s) before "
               f"{failing or 'it'}: {', '.join(done)}" if done
               else f"this run committed no file before {failing or 'it'}", where]
    summary += [f"{i['id']} is incomplete (interrupted {i['operation']}): `harness apply` "
                "redoes it, `harness rollback` undoes it" for i in incomplete]

    def narrow(text: str) -> str:
        if not done or not failing:
            return text
        return _NOTHING_CHANGED.sub(
            f"Nothing of {failing} was changed (the {len(done)} file(s) this run {verb} "
            f"before it stay {verb}).", text)

    details = [narrow(d) for d in e.details]
    message = narrow(e.message)
    sqlstate = getattr(e, "sqlstate", None)
    stop = f"{direction} stopped at {current or 'no applied version'}"
    if direction == "rollback" and sqlstate == "FM002":
        why = (["the rollback probe found nothing to refuse before the first file ran, so "
                "these rows were written while the rollback ran (by the application, "
                "between two files)"] if probe_passed else [])
        return RollbackRefused(
            f"{stop}: {message}", sqlstate=sqlstate,
            details=details + why + summary
            + ["`harness apply` returns to the newest version; or end or move those rows "
               "(or archive them: --preserve) and run the rollback again"])
    if sqlstate == "FM001" and not isinstance(e, RefusedError):
        return PreflightRefused(f"{stop}: {message}", sqlstate=sqlstate,
                                file=getattr(e, "file", None), details=details + summary)
    if isinstance(e, LockNotGranted):
        e.message = f"{stop}: {message}"
    else:
        e.message = message
    e.details = details + summary
    return e


def apply(target_dsn: str, to: str | None = None, *, dry_run: bool = False,
          preserve: bool = False, sql_root: Path | None = None,
          lock_timeout: str = DEFAULT_LOCK_TIMEOUT, statement_timeout: str = "0",
          progress: Progress | None = None, lock_wait: float = 30.0, err=None,
          lock_retries: int | None = None, retry_max_delay: float | None = None,
          concurrent_lock_timeout: str = DEFAULT_CONCURRENT_LOCK_TIMEOUT) -> ApplyResult:
    """Apply pending migrations (through ``to`` when given). See the module docstring."""
    files = load_chain(sql_root)
    result = ApplyResult(target=redact(target_dsn), dry_run=dry_run)
    retry = _retry_policy(lock_timeout, lock_retries, retry_max_delay,
                          concurrent_lock_timeout)
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
                    statement_timeout=statement_timeout, progress=progress, err=err,
                    retry=retry)
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
        incomplete = {i["id"]: i["operation"] for i in st["incomplete"]}
        for mid in sorted(set(incomplete) - {f.id for f in pending}):
            sess.say(f"warning: {mid} is incomplete (interrupted {incomplete[mid]}) and "
                     f"newer than --to: `harness apply` redoes it, `harness rollback "
                     f"--to {target.id if target else '...'}` undoes it")
        sess.ensure_bookkeeping()    # creates it, or moves an earlier harness's out of public
        f = None
        try:
            for f in pending:
                if f.baseline and adopt_baseline:
                    sess.adopt(f)
                    result.adopted.append(f.id)
                    continue
                if incomplete.get(f.id) == "rollback":
                    # its rollback committed some statements: finish it (the rollback of
                    # a no-transaction file is rerunnable), then apply the file afresh
                    sess.say(f"{f.id}: its rollback was interrupted; finishing it, then "
                             "applying the file again")
                    sess.rollback_one(f, preserve=preserve)
                elif incomplete.get(f.id) == "apply":
                    sess.say(f"{f.id}: its apply was interrupted; running the file again "
                             "from the top")
                sess.apply_one(f, preserve=preserve)
                result.applied.append(f.id)
        except HarnessError as e:
            raise _stopped(sess, files, e, "apply", result.adopted + result.applied,
                           f.id if f else None) from e
    finally:
        sess.close()
    return result


def _refuse_rollback_drift(st: dict, victims: list[str]) -> None:
    """Rollback's drift rule: apply's (no applied file edited since it was
    applied), plus the rollback file of every file it would roll back (the probe
    and the run would execute an edited file)."""
    rb = [c for c in st["rollback_changed"] if c["id"] in victims]
    if not (st["drift"] or rb):
        return
    raise DriftError(
        "refusing to roll back: files were edited since they were applied (drift); "
        "nothing was rolled back",
        details=[f"{d['file']} (migration file): recorded sha256 "
                 f"{d['recorded_checksum'][:12]}..., file now {d['checksum'][:12]}..."
                 for d in st["drift"]]
        + [f"{c['file']} (rollback file of {c['id']}, which this rollback would run): "
           f"recorded sha256 {c['recorded_checksum'][:12]}..., file now "
           + (f"{c['checksum'][:12]}..." if c["checksum"] else "missing")
           for c in rb]
        + ["restore the files as they were applied (the recorded sha256 is in "
           f"{bk(HARNESS_TABLE)}); changes go into a new versioned file"])


def rollback(target_dsn: str, *, to: str | None = None, steps: int | None = None,
             preserve: bool = False, sql_root: Path | None = None,
             lock_timeout: str = DEFAULT_LOCK_TIMEOUT, statement_timeout: str = "0",
             progress: Progress | None = None, lock_wait: float = 30.0,
             dry_run: bool = False, err=None, lock_retries: int | None = None,
             retry_max_delay: float | None = None,
             concurrent_lock_timeout: str = DEFAULT_CONCURRENT_LOCK_TIMEOUT
             ) -> RollbackResult:
    """Roll back to ``to`` (it stays applied) or the ``steps`` newest migrations."""
    if (to is None) == (steps is None):
        raise UsageError("rollback needs exactly one of --to VERSION or --steps N")
    if steps is not None and steps < 1:
        raise UsageError("--steps must be at least 1")
    files = load_chain(sql_root)
    by_id = {f.id: f for f in files}
    result = RollbackResult(target=redact(target_dsn), dry_run=dry_run)
    retry = _retry_policy(lock_timeout, lock_retries, retry_max_delay,
                          concurrent_lock_timeout)
    sess = _Session(target_dsn, lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout, progress=progress, err=err,
                    retry=retry)
    try:
        if not dry_run:
            sess.lock(lock_wait)
        state = _read_state(sess.conn)
        st = _compute_status(files, state, None)
        if st["unknown"]:
            raise RefusedError("refusing to roll back: the database has migrations this "
                               "tree does not know", details=[u["id"] for u in st["unknown"]])
        # an incomplete no-transaction file (interrupted apply or rollback) holds part
        # of its changes: roll it back like an applied one (its rollback is rerunnable)
        incomplete = {i["id"]: i["operation"] for i in st["incomplete"]}
        done = {a["id"] for a in st["applied"]}
        applied = [f.id for f in files if f.id in done or f.id in incomplete]
        if to is not None:
            target = find(files, to)
            if target.id in incomplete:
                raise UsageError(
                    f"{target.id} is incomplete (interrupted {incomplete[target.id]}); it "
                    f"cannot stay as the last applied version: `harness apply --to "
                    f"{target.id}` redoes it, or roll back to an older version")
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
        _refuse_rollback_drift(st, victims)
        if dry_run:
            result.planned = victims
            return result
        sess.probe_rollback([by_id[m] for m in victims], preserve=preserve)
        if victims:
            sess.ensure_bookkeeping()   # moves an earlier harness's out of public
        mid = None
        try:
            for mid in victims:
                if mid in incomplete:
                    sess.say(f"{mid}: its {incomplete[mid]} was interrupted; "
                             + ("finishing the rollback" if incomplete[mid] == "rollback"
                                else "undoing what it committed with its rollback file"))
                sess.rollback_one(by_id[mid], preserve=preserve)
                result.rolled_back.append(mid)
        except HarnessError as e:
            raise _stopped(sess, files, e, "rollback", result.rolled_back, mid,
                           probe_passed=True) from e
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
        found = bookkeeping_tables(conn)
        schema_exists = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL",
                                     (BOOKKEEPING_SCHEMA,)).fetchone()[0]
    return {"target": redact(target_dsn), "pending": pending, "adopt_baseline": adopt,
            "incomplete": {i["id"]: i["operation"] for i in st["incomplete"]},
            "bookkeeping_exists": bool(found),
            "bookkeeping_schema_exists": schema_exists,
            "legacy_bookkeeping": found.get(LEGACY_SCHEMA, [])}


def _lit(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    return "'" + str(v).replace("'", "''") + "'"


BOOKKEEPING_SQL = f"""\
-- Bookkeeping tables (as the harness and yoyo-migrations 9 create them), in
-- schema {BOOKKEEPING_SCHEMA}, out of the application's public schema.
CREATE TABLE IF NOT EXISTS {bk("yoyo_lock")} (
    locked INT DEFAULT 1, ctime TIMESTAMP, pid INT NOT NULL, PRIMARY KEY (locked)
);
CREATE TABLE IF NOT EXISTS {bk("_yoyo_log")} (
    id VARCHAR(36), migration_hash VARCHAR(64), migration_id VARCHAR(255),
    operation VARCHAR(10), username VARCHAR(255), hostname VARCHAR(255),
    comment VARCHAR(255), created_at_utc TIMESTAMP, PRIMARY KEY (id)
);
CREATE TABLE IF NOT EXISTS {bk("_yoyo_version")} (
    version INT NOT NULL PRIMARY KEY, installed_at_utc TIMESTAMP
);
INSERT INTO {bk("_yoyo_version")} (version, installed_at_utc)
SELECT 2, now() AT TIME ZONE 'utc'
WHERE NOT EXISTS (SELECT 1 FROM {bk("_yoyo_version")} WHERE version = 2);
CREATE TABLE IF NOT EXISTS {bk(MIGRATION_TABLE)} (
    migration_hash VARCHAR(64), migration_id VARCHAR(255),
    applied_at_utc TIMESTAMP, PRIMARY KEY (migration_hash)
);
{HARNESS_TABLE_DDL.strip()};
{STATE_COLUMN_DDL};
"""


def bookkeeping_setup_sql(p: dict) -> str:
    """The bookkeeping part of a plan script: create the schema when missing, move
    an earlier harness's tables out of public, create what is missing."""
    out = []
    if not p.get("bookkeeping_schema_exists"):
        out.append(f"CREATE SCHEMA {BOOKKEEPING_SCHEMA};")
    if p.get("legacy_bookkeeping"):
        out.append(f"-- this database's bookkeeping is in {LEGACY_SCHEMA} (an earlier harness): "
                   "move it, rows and all")
        out += [f'ALTER TABLE {LEGACY_SCHEMA}."{t}" SET SCHEMA {BOOKKEEPING_SCHEMA};'
                for t in p["legacy_bookkeeping"]]
    return "\n".join(out + [BOOKKEEPING_SQL.rstrip()])


def bookkeeping_sql(f: MigrationFile, *, adopted: bool = False) -> str:
    h = get_migration_hash(f.id)
    op = "mark" if adopted else "apply"
    return (
        f"INSERT INTO {bk(MIGRATION_TABLE)} (migration_hash, migration_id, applied_at_utc)\n"
        f"VALUES ({_lit(h)}, {_lit(f.id)}, now() AT TIME ZONE 'utc');\n"
        f'INSERT INTO {bk("_yoyo_log")} (id, migration_hash, migration_id, operation, '
        "username, hostname, created_at_utc)\n"
        f"VALUES (md5(random()::text || clock_timestamp()::text), {_lit(h)}, {_lit(f.id)}, "
        f"{_lit(op)}, current_user, 'psql', now() AT TIME ZONE 'utc');\n"
        f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
        "adopted, no_transaction, state)\n"
        f"VALUES ({_lit(f.id)}, {_lit(f.checksum)}, {_lit(f.rollback_checksum)}, "
        f"{_lit(adopted)}, {_lit(f.no_transaction)}, 'applied')\n"
        "ON CONFLICT (migration_id) DO UPDATE SET state = 'applied', applied_at = now(), "
        "applied_by = current_user;\n")


def in_progress_sql(f: MigrationFile, state: str) -> str:
    """Record a no-transaction file as in progress, before its first statement."""
    return (f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
            "no_transaction, state)\n"
            f"VALUES ({_lit(f.id)}, {_lit(f.checksum)}, {_lit(f.rollback_checksum)}, "
            f"{_lit(f.no_transaction)}, {_lit(state)})\n"
            "ON CONFLICT (migration_id) DO UPDATE SET state = EXCLUDED.state, "
            "applied_at = now(), applied_by = current_user;")


def unrecord_sql(f: MigrationFile) -> str:
    h = get_migration_hash(f.id)
    return (f"DELETE FROM {bk(MIGRATION_TABLE)} WHERE migration_hash = {_lit(h)};\n"
            f'INSERT INTO {bk("_yoyo_log")} (id, migration_hash, migration_id, operation, '
            "username, hostname, created_at_utc)\n"
            f"VALUES (md5(random()::text || clock_timestamp()::text), {_lit(h)}, {_lit(f.id)}, "
            "'rollback', current_user, 'psql', now() AT TIME ZONE 'utc');\n"
            f"DELETE FROM {bk(HARNESS_TABLE)} WHERE migration_id = {_lit(f.id)};")


def plan_sql(p: dict) -> str:
    """One psql script (``psql -v ON_ERROR_STOP=1 -f``) doing what apply would do."""
    out = [f"-- harness plan for {p['target']}",
           f"-- {len(p['pending'])} pending migration(s); review, then run with:",
           "--   psql -v ON_ERROR_STOP=1 -f plan.sql",
           "-- Each transactional file runs in BEGIN/COMMIT together with its bookkeeping;",
           "-- no-transaction files are recorded as in progress, run outside a transaction,",
           "-- then recorded as complete.",
           "-- Note: run by psql, there is no advisory lock, drift check or 55P03 retry.",
           "\\set ON_ERROR_STOP on",
           "SET application_name = 'harness-plan';", ""]
    if not p["pending"]:
        out.append("-- nothing to do")
        return "\n".join(out) + "\n"
    out += ["BEGIN;", bookkeeping_setup_sql(p), "COMMIT;", ""]
    for f in p["pending"]:
        out.append(f"-- ===== {f.id} ({f.relpath()}, sha256 {f.checksum})")
        if f.baseline and p["adopt_baseline"]:
            out += ["-- ADOPTED: the live schema matches the baseline; recorded, not run.",
                    "BEGIN;", bookkeeping_sql(f, adopted=True).rstrip(), "COMMIT;", ""]
            continue
        body = f.sql if f.sql.endswith("\n") else f.sql + "\n"
        if p.get("incomplete", {}).get(f.id) == "rollback":
            rb = (f.rollback_sql or "").rstrip()
            out.append("-- its rollback was interrupted (recorded as rolling_back): finish it")
            if f.rollback_no_transaction:
                out += [rb, "BEGIN;", unrecord_sql(f), "COMMIT;", ""]
            else:
                out += ["BEGIN;", rb, unrecord_sql(f), "COMMIT;", ""]
        if f.no_transaction:
            out += ["-- no-transaction file: recorded as in progress, statements run in "
                    "autocommit mode, then recorded as complete",
                    in_progress_sql(f, "applying"), body.rstrip(),
                    "BEGIN;", bookkeeping_sql(f).rstrip(), "COMMIT;", ""]
        else:
            out += ["BEGIN;", body.rstrip(), "", "-- bookkeeping", bookkeeping_sql(f).rstrip(),
                    "COMMIT;", ""]
    return "\n".join(out) + "\n"
