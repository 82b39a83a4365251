"""The bookkeeping: where the harness records what is applied, and its writes.

Where it lives
    Every bookkeeping table (yoyo's ``_yoyo_migration``, ``_yoyo_log``,
    ``_yoyo_version``, ``yoyo_lock`` and our ``_harness_migration``) lives in the
    schema ``harness`` (:data:`BOOKKEEPING_SCHEMA`), out of ``public`` where
    Prisma and every introspection of the application's schema would see it, the
    way sqitch keeps its registry in a ``sqitch`` schema. The migration
    connection keeps its ordinary ``search_path`` (``"$user", public``), so the
    files create their objects in ``public`` unqualified, exactly as with psql;
    instead every bookkeeping statement names its table schema-qualified: ours
    directly, yoyo's through :class:`Backend`, which overrides the
    ``*_table_quoted`` names yoyo builds its SQL from (yoyo quotes a table name
    as one identifier, so ``migration_table = "harness._yoyo_migration"`` would
    not work, and yoyo's ``?schema=`` URI option would move the migrations' own
    objects too). yoyo's own table management (``init_database``,
    ``ensure_internal_schema_updated``) looks for its tables in
    ``current_schema``, i.e. ``public``, and would create them there, so the
    harness never calls it: :meth:`Bookkeeping.ensure` creates the same tables
    (yoyo 9's DDL, :data:`BOOKKEEPING_SQL`, which ``plan --sql`` prints as well)
    in the bookkeeping schema. ``yoyo list --database
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

What it records
    A file's yoyo mark and log row, and our ``_harness_migration`` row with the
    sha256 of the file and of its rollback (drift), who and when (``applied_by``,
    the role that ran it, ``current_user``; ``applied_at``; both rewritten when a
    no-transaction file starts and again when it completes) and its ``state``: 'applied',
    or, for a no-transaction file whose statements have started to commit,
    'applying' / 'rolling_back' (see :mod:`harness.runner`). :func:`read_state`
    reads it back; every write names the table it is writing in
    :attr:`Bookkeeping.step`, so that an error there names the table, not a line
    of the SQL file.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from datetime import datetime, timezone

import psycopg
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.migrations import Migration

from .chain import MigrationFile
from .errors import HarnessError, MigrationFailed, RefusedError, describe_pg_error

#: the schema that holds every bookkeeping table (see "Where the bookkeeping lives")
BOOKKEEPING_SCHEMA = "harness"
#: where an earlier harness (and yoyo by default) kept them
LEGACY_SCHEMA = "public"
MIGRATION_TABLE = "_yoyo_migration"
HARNESS_TABLE = "_harness_migration"
#: the one group role that may read the bookkeeping, and what it may read
READER_ROLE = "forgea_readonly"
READER_TABLES = (MIGRATION_TABLE, HARNESS_TABLE)
#: every bookkeeping table; yoyo's probe tables ``yoyo_tmp_*`` are bookkeeping too
BOOKKEEPING_TABLES = (MIGRATION_TABLE, "_yoyo_log", "_yoyo_version", "yoyo_lock",
                      HARNESS_TABLE)


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


#: every change ``harness repair`` makes to the bookkeeping, with who, when and why
REPAIR_LOG_TABLE = "_harness_repair_log"
REPAIR_LOG_DDL = f"""
CREATE TABLE IF NOT EXISTS {bk(REPAIR_LOG_TABLE)} (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repaired_at     timestamptz NOT NULL DEFAULT now(),
    current_role_name text NOT NULL DEFAULT current_user,
    session_role_name text NOT NULL DEFAULT session_user,
    action          text NOT NULL,
    migration_id    text NOT NULL,
    reason          text NOT NULL CONSTRAINT _harness_repair_log_reason_check
                    CHECK (btrim(reason) <> ''),
    evidence        text
)"""


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


class Backend(PostgresqlPsycopgBackend):
    """yoyo's psycopg 3 backend writing to the bookkeeping schema.

    yoyo formats its SQL with ``{0.migration_table_quoted}``, ``log_table_quoted``,
    ``lock_table_quoted`` and ``version_table_quoted`` (built by ``__getattr__``
    from the bare names); these properties return schema-qualified names instead,
    so ``mark_one`` / ``unmark_one`` / ``log_migration`` write to
    ``harness._yoyo_migration`` and ``harness._yoyo_log`` whatever the connection's
    search_path. yoyo's table management is switched off (see the module
    docstring): PostgreSQL has transactional DDL, and ``Bookkeeping.ensure``
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

    def connect(self, dburi):
        """yoyo passes ``dbname=''`` for a URI without a database, which libpq takes
        as given (and then defaults to the user name), hiding $PGDATABASE; pass
        none, so that an empty conninfo gets every parameter from the libpq
        environment as psql would."""
        if not dburi.database:
            dburi = dburi._replace(database=None)
        return super().connect(dburi)

    def init_database(self):
        raise NotImplementedError("the harness creates the bookkeeping (Bookkeeping.ensure)")

    def ensure_internal_schema_updated(self):
        """No-op: yoyo would look for (and create) its tables in current_schema."""

    def get_log_data(self, migration=None, operation="apply"):
        if Backend._hostname is None:
            Backend._hostname = socket.gethostname()
        return {
            "id": uuid.uuid1().hex[:32],
            "migration_id": migration.id if migration else None,
            "migration_hash": migration.hash if migration else None,
            "username": getpass.getuser(),
            "hostname": Backend._hostname,
            "created_at_utc": datetime.now(timezone.utc).replace(tzinfo=None),
            "operation": operation,
        }


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


def read_state(conn) -> dict[str, dict]:
    """Applied migrations by id (empty when the bookkeeping tables are missing); a
    role that may not read them gets one line naming the grants (exit 1)."""
    try:
        return _read_state(conn)
    except psycopg.errors.InsufficientPrivilege as e:
        raise HarnessError(
            f"cannot read the harness bookkeeping: {e.diag.message_primary}",
            details=[f"`harness apply` (as the migration owner) grants {READER_ROLE} what "
                     "status and verify read; or, as the owner of schema "
                     f"{BOOKKEEPING_SCHEMA}: GRANT USAGE ON SCHEMA {BOOKKEEPING_SCHEMA} TO "
                     f"{READER_ROLE}; GRANT SELECT ON "
                     + ", ".join(bk(t) for t in READER_TABLES) + f" TO {READER_ROLE};"]
        ) from None


def _read_state(conn) -> dict[str, dict]:
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
                      "adopted": False, "state": "applied", "applied_by": None}
    if has_harness:
        cols = {r[0] for r in cur.execute(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attname IN ('state', 'applied_by') AND NOT attisdropped",
            (f'{schema}."{HARNESS_TABLE}"',)).fetchall()}
        cur.execute("SELECT migration_id, checksum, rollback_checksum, adopted, applied_at, "
                    + ("state, " if "state" in cols else "'applied', ")
                    + ("applied_by " if "applied_by" in cols else "NULL::text ")
                    + f'FROM {schema}."{HARNESS_TABLE}"')
        for mid, cs, rcs, adopted, at, st, by in cur.fetchall():
            if mid not in state and st != "applying":
                continue    # a row without yoyo mark: only an interrupted apply has one
            rec = state.setdefault(mid, {"id": mid, "applied_at": None})
            rec.update(checksum=cs, rollback_checksum=rcs, adopted=adopted, state=st,
                       applied_by=by,
                       applied_at=at.isoformat() if at else rec["applied_at"])
    return state


class Bookkeeping:
    """The bookkeeping writes of one migration session (``session.conn``, its yoyo
    ``session.backend``), under the migration lock. :attr:`step` is the
    bookkeeping table being written, if any."""

    def __init__(self, session):
        self.session = session
        self.step: str | None = None
        self._reader_warned = False

    @property
    def conn(self) -> psycopg.Connection:
        return self.session.conn

    def ensure(self) -> None:
        """The bookkeeping schema with every table in it, in ONE transaction under
        the migration lock: created on a new database; on a database an earlier
        harness migrated, its tables are moved out of ``public`` (ALTER TABLE ...
        SET SCHEMA keeps rows, indexes and ACLs); a no-op once in place."""
        assert self.session.lock.held
        self.session.backend._is_locked = True      # yoyo's lock row is never used: we hold ours
        found = bookkeeping_tables(self.conn)
        legacy = found.get(LEGACY_SCHEMA, [])
        present = found.get(BOOKKEEPING_SCHEMA, [])
        if not legacy and set(present) >= set(BOOKKEEPING_TABLES) and self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
                "to_regclass(%s) AND attname = 'state' AND NOT attisdropped)",
                (bk(HARNESS_TABLE),)).fetchone()[0]:
            self.grant_reader()
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
            with self.session.backend.transaction():
                # CREATE TABLE IF NOT EXISTS would print "already exists, skipping"
                self.conn.execute("SET LOCAL client_min_messages = warning")
                if not schema_exists:
                    self.conn.execute(f"CREATE SCHEMA {BOOKKEEPING_SCHEMA}")
                for t in legacy:
                    self.conn.execute(f'ALTER TABLE {LEGACY_SCHEMA}."{t}" '
                                      f"SET SCHEMA {BOOKKEEPING_SCHEMA}")
                self.conn.execute(BOOKKEEPING_SQL)
        except psycopg.Error as e:
            self.session.reset_tx()
            line, extra = describe_pg_error(e)
            what = (f"moving the bookkeeping from {LEGACY_SCHEMA} to schema "
                    f"{BOOKKEEPING_SCHEMA}" if legacy else
                    f"creating the bookkeeping in schema {BOOKKEEPING_SCHEMA}")
            raise MigrationFailed(f"{what} failed, nothing was changed: {line}",
                                  sqlstate=e.sqlstate, details=extra)
        self.grant_reader()
        if legacy:
            self.session.say(f"moved the harness bookkeeping from schema {LEGACY_SCHEMA} "
                             f"to schema {BOOKKEEPING_SCHEMA}: {', '.join(legacy)}")

    def grant_reader(self) -> None:
        """USAGE on the bookkeeping schema and SELECT on :data:`READER_TABLES` to
        :data:`READER_ROLE`, when that role exists and lacks them (in the current
        transaction, or one of its own)."""
        missing = self.conn.execute(
            "SELECT r.oid IS NOT NULL AND to_regnamespace(%s) IS NOT NULL AND ("
            "NOT pg_catalog.has_schema_privilege(r.oid, %s, 'USAGE') OR EXISTS ("
            "SELECT 1 FROM unnest(%s::text[]) t WHERE to_regclass(%s || '.' || "
            "quote_ident(t)) IS NOT NULL AND NOT pg_catalog.has_table_privilege("
            "r.oid, to_regclass(%s || '.' || quote_ident(t)), 'SELECT'))) "
            "FROM (SELECT (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s) AS oid) r",
            (BOOKKEEPING_SCHEMA, BOOKKEEPING_SCHEMA, list(READER_TABLES), BOOKKEEPING_SCHEMA,
             BOOKKEEPING_SCHEMA, READER_ROLE)).fetchone()[0]
        if not missing:
            return
        can = self.conn.execute(
            "SELECT pg_catalog.has_schema_privilege(%s, 'USAGE WITH GRANT OPTION') AND "
            "NOT EXISTS (SELECT 1 FROM unnest(%s::text[]) t WHERE to_regclass(%s || '.' || "
            "quote_ident(t)) IS NOT NULL AND NOT pg_catalog.has_table_privilege("
            "to_regclass(%s || '.' || quote_ident(t)), 'SELECT WITH GRANT OPTION'))",
            (BOOKKEEPING_SCHEMA, list(READER_TABLES), BOOKKEEPING_SCHEMA,
             BOOKKEEPING_SCHEMA)).fetchone()[0]
        if not can:
            if not self._reader_warned:
                self._reader_warned = True
                self.session.say(
                    f"warning: cannot let {READER_ROLE} read the bookkeeping (schema "
                    f"{BOOKKEEPING_SCHEMA} is another role's), so `harness status` and "
                    f"`verify` will not run as that role; as its owner: GRANT USAGE ON "
                    f"SCHEMA {BOOKKEEPING_SCHEMA} TO {READER_ROLE}; GRANT SELECT ON "
                    + ", ".join(bk(t) for t in READER_TABLES) + f" TO {READER_ROLE};")
            return
        try:
            with self.conn.transaction():   # a savepoint inside a file's transaction
                self.conn.execute(f"GRANT USAGE ON SCHEMA {BOOKKEEPING_SCHEMA} TO "
                                  f"{READER_ROLE}")
                for t in READER_TABLES:
                    self.conn.execute(f"GRANT SELECT ON {bk(t)} TO {READER_ROLE}")
        except psycopg.errors.InsufficientPrivilege as e:
            # the schema belongs to another role: the run goes on, the DBA is told
            self.session.say(f"warning: could not let {READER_ROLE} read the bookkeeping "
                             f"({e.diag.message_primary}); as the owner of schema "
                             f"{BOOKKEEPING_SCHEMA}: GRANT USAGE ON SCHEMA "
                             f"{BOOKKEEPING_SCHEMA} TO {READER_ROLE}; GRANT SELECT ON "
                             + ", ".join(bk(t) for t in READER_TABLES)
                             + f" TO {READER_ROLE};")

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
            self.session.say(f"warning: schema {BOOKKEEPING_SCHEMA} is owned by {owner}, not "
                             f"by the migration role {me}; its owner can drop or alter the "
                             "bookkeeping")
        return True

    def record(self, f: MigrationFile, m: Migration, *, adopted: bool) -> None:
        """Mark ``f`` applied (yoyo's mark and log, our row with state 'applied')."""
        b = self.session.backend
        self.step = bk(MIGRATION_TABLE)
        b.mark_one(m, log=False)
        self.step = bk("_yoyo_log")
        b.log_migration(m, "mark" if adopted else "apply")
        self.step = bk(HARNESS_TABLE)
        self.conn.execute(
            f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
            "adopted, no_transaction, state) VALUES (%s, %s, %s, %s, %s, 'applied') "
            "ON CONFLICT (migration_id) DO UPDATE SET checksum = EXCLUDED.checksum, "
            "rollback_checksum = EXCLUDED.rollback_checksum, adopted = EXCLUDED.adopted, "
            "no_transaction = EXCLUDED.no_transaction, applied_at = now(), "
            "applied_by = current_user, state = 'applied'",
            (f.id, f.checksum, f.rollback_checksum, adopted, f.no_transaction))
        self.grant_reader()     # the role exists once V0002 ran: grant in that run
        self.step = None

    def unrecord(self, f: MigrationFile, m: Migration) -> None:
        """Remove every record of ``f`` (yoyo's mark, our row); log the rollback."""
        b = self.session.backend
        self.step = bk(MIGRATION_TABLE)
        b.unmark_one(m, log=False)
        self.step = bk("_yoyo_log")
        b.log_migration(m, "rollback")
        self.step = bk(HARNESS_TABLE)
        self.conn.execute(f"DELETE FROM {bk(HARNESS_TABLE)} WHERE migration_id = %s", (f.id,))
        self.step = None

    def mark_in_progress(self, f: MigrationFile, state: str) -> None:
        """Before the first statement of a no-transaction file: our row says
        'applying' (no yoyo mark: the file does not count as applied) or
        'rolling_back' (it no longer counts as applied either)."""
        assert state in ("applying", "rolling_back")
        self.step = bk(HARNESS_TABLE)
        self.conn.execute(
            f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
            "no_transaction, state) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (migration_id) DO UPDATE SET state = EXCLUDED.state, "
            "applied_at = now(), applied_by = current_user",
            (f.id, f.checksum, f.rollback_checksum, f.no_transaction, state))
        self.step = None

    def complete(self, f: MigrationFile, m: Migration, op: str) -> None:
        """The record a finished file leaves: applied (``op`` 'apply') or gone."""
        if op == "apply":
            self.record(f, m, adopted=False)
        else:
            self.unrecord(f, m)
