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
#: the schema that holds every bookkeeping table (see "Where the bookkeeping lives")
BOOKKEEPING_SCHEMA = "harness"
#: where an earlier harness (and yoyo by default) kept them
LEGACY_SCHEMA = "public"
MIGRATION_TABLE = "_yoyo_migration"
HARNESS_TABLE = "_harness_migration"
#: every bookkeeping table; yoyo's probe tables ``yoyo_tmp_*`` are bookkeeping too
BOOKKEEPING_TABLES = (MIGRATION_TABLE, "_yoyo_log", "_yoyo_version", "yoyo_lock",
                      HARNESS_TABLE)
MAX_LOCK_RETRIES = 5
RETRY_BASE_DELAY = 0.5


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


def connect(dsn: str, *, lock_timeout="5s", statement_timeout="0", autocommit=True):
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

    def _with_retries(self, f: MigrationFile, what: str, fn, path_for_error: str, text: str,
                      *, state_after: str | None = None):
        """Run ``fn``, retrying it on lock_not_available. ``state_after``: what a
        failure leaves committed (added to the error). A failure while writing the
        bookkeeping names the bookkeeping table, not a line of the file."""
        attempt = 0
        while True:
            self.bk_step = None
            try:
                return fn()
            except psycopg.Error as e:
                self._reset_tx()
                lost = self.conn.closed or self.conn.broken
                after = [state_after] if state_after else []
                if lost:    # a COMMIT may or may not have reached the server
                    after = ["the connection was lost, so whether the last step committed "
                             "is unknown; `harness status` shows what is recorded"]
                if not lost and e.sqlstate == "55P03" and attempt < MAX_LOCK_RETRIES:
                    attempt += 1
                    delay = RETRY_BASE_DELAY * (2 ** (attempt - 1))
                    self.say(f"{f.id}: lock not available (55P03: "
                             f"{(e.diag.message_primary or '').strip()}); "
                             f"retry {attempt}/{MAX_LOCK_RETRIES} in {delay:g}s")
                    self.event("retry", f.id)
                    time.sleep(delay)
                    continue
                if self.bk_step:
                    line, extra = describe_pg_error(e)
                    raise MigrationFailed(
                        f"{what} {f.id}: writing the bookkeeping ({self.bk_step}) failed"
                        + (" (connection lost)" if lost else "") + f": {line}",
                        sqlstate=e.sqlstate, file=self.bk_step, details=extra + after)
                if lost:
                    line, extra = describe_pg_error(e, file=path_for_error)
                    raise MigrationFailed(f"{what} {f.id}: connection lost: {line}",
                                          sqlstate=e.sqlstate, file=path_for_error,
                                          details=extra + after)
                line, extra = describe_pg_error(e, file=path_for_error, sql=text)
                raise MigrationFailed(line, sqlstate=e.sqlstate, file=path_for_error,
                                      details=extra + after)

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
            self.drop_invalid_indexes(text)
            if preserve:
                self.conn.execute("SET forgea.rollback_preserve = 'on'")
            self._set_timeout(local=False)
            try:
                for step in m.steps:          # file order, as psql would
                    if direction == "apply":
                        step.apply(self.backend)
                    else:
                        step.rollback(self.backend)
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

        self._with_retries(f, what, start, path, text,
                           state_after=f"nothing of {rel} ran; the database is unchanged")
        self._with_retries(f, what, statements, path, text,
                           state_after=f"the statements of {rel} before the failing one "
                                       f"committed; {incomplete}")
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
        incomplete = {i["id"]: i["operation"] for i in st["incomplete"]}
        for mid in sorted(set(incomplete) - {f.id for f in pending}):
            sess.say(f"warning: {mid} is incomplete (interrupted {incomplete[mid]}) and "
                     f"newer than --to: `harness apply` redoes it, `harness rollback "
                     f"--to {target.id if target else '...'}` undoes it")
        sess.ensure_bookkeeping()    # creates it, or moves an earlier harness's out of public
        for f in pending:
            if f.baseline and adopt_baseline:
                sess.adopt(f)
                result.adopted.append(f.id)
                continue
            if incomplete.get(f.id) == "rollback":
                # its rollback committed some statements: finish it (the rollback of a
                # no-transaction file is rerunnable), then apply the file afresh
                sess.say(f"{f.id}: its rollback was interrupted; finishing it, then "
                         "applying the file again")
                sess.rollback_one(f, preserve=preserve)
            elif incomplete.get(f.id) == "apply":
                sess.say(f"{f.id}: its apply was interrupted; running the file again "
                         "from the top")
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
        for c in st["rollback_changed"]:
            if c["id"] in victims:
                sess.say(f"warning: {c['file']} changed since {c['id']} was applied")
        if dry_run:
            result.planned = victims
            return result
        sess.probe_rollback([by_id[m] for m in victims], preserve=preserve)
        if victims:
            sess.ensure_bookkeeping()   # moves an earlier harness's out of public
        for mid in victims:
            if mid in incomplete:
                sess.say(f"{mid}: its {incomplete[mid]} was interrupted; "
                         + ("finishing the rollback" if incomplete[mid] == "rollback"
                            else "undoing what it committed with its rollback file"))
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
