"""Shared fixtures: one throwaway PostgreSQL cluster per test session.

The suite runs once per server version (``--pg-version 18|17|16|15``, default
``$HARNESS_PG_VERSION`` or 18).  A version that cannot be installed or started
fails the run with one line saying why, never a skip.

Fixtures:
  pg_version   (session) int
  pg_cluster   (session) harness.servers.Cluster, superuser ``postgres``
  sql_root     (session) Path of the repo's ``sql/`` directory
  owner_role   (session) "forgea_owner": non-superuser LOGIN CREATEROLE CREATEDB
  tmpl_full    (session) name of the template with the whole chain applied
  tmpl_upstream(session) name of the template built by the seven real Prisma
                         migrations (tests/upstream.py): production, no rows
  tmpl_baseline(session) production adopted by the harness, then V0002__roles_and_archive
  tmpl_prod_full(session) production with production-like rows (tests/prodlike.py),
                         adopted and migrated with the whole chain
  login_roles  (session) dict role-key -> role name (app_login, worker_login, ...)
  reference_snapshot (session) catalog + grants the whole chain creates (verify)
  db           (function) TestDB cloned from tmpl_full
  baseline_db  (function) TestDB cloned from tmpl_baseline
  upstream_db  (function) TestDB cloned from tmpl_upstream (not adopted yet)
  prod_db      (function) TestDB cloned from tmpl_prod_full
  empty_db     (function) TestDB, empty database owned by forgea_owner
  scratch_dir  (function) Path of a fresh directory the server user can reach

Migrations always run as forgea_owner, proving the non-superuser path.
"Production" is always what the real Prisma migrations build, never V0001:
every template but tmpl_full starts from tmpl_upstream.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql.janitor import DatabaseJanitor

from harness import servers
from tests import progress, upstream

REPO_ROOT = Path(__file__).resolve().parent.parent

# the attack summary must run in pytest-xdist's controller too
pytest_plugins = ["tests.attack_summary"]
OWNER = "forgea_owner"
BASELINE_TARGET = "V0002__roles_and_archive"

# role key used by TestDB.connect/dsn -> (login role, group role it belongs to)
LOGIN_ROLES = {
    "app": ("app_login", "forgea_app"),
    "worker": ("worker_login", "forgea_worker"),
    "readonly": ("readonly_login", "forgea_readonly"),
    "hostile": ("hostile_login", None),
}
ROLE_NAMES = {
    "owner": OWNER,
    "superuser": servers.SUPERUSER,
    **{key: login for key, (login, _group) in LOGIN_ROLES.items()},
}


def pytest_addoption(parser):
    parser.addoption(
        "--pg-version", type=int, choices=servers.SUPPORTED_VERSIONS,
        default=int(os.environ.get("HARNESS_PG_VERSION", "18")),
        help="PostgreSQL major version to run the suite against (18, 17, 16 or 15; "
             "default $HARNESS_PG_VERSION or 18)",
    )


#: a tmpfs for the run's throwaway clusters, used when it has this much room
TMPFS = Path("/dev/shm")
TMPFS_MIN_FREE = 4 << 30


def pytest_configure(config):
    """The run's throwaway clusters live on a tmpfs when the machine has one with
    room ($HARNESS_CLUSTER_REGISTRY, unless already set; xdist workers inherit it).

    Every test clones a template database, and CREATE DATABASE writes and
    removes a few hundred files: on this project's ext4 disk a clone took
    0.2-0.5 s, on /dev/shm 0.01-0.02 s (measured on PostgreSQL 18). The servers
    are the same real PostgreSQL; only where their files live changes.
    """
    progress.bind(config)
    if os.environ.get("HARNESS_CLUSTER_REGISTRY"):
        return
    try:
        usable = (TMPFS.is_dir() and os.access(TMPFS, os.W_OK)
                  and shutil.disk_usage(TMPFS).free >= TMPFS_MIN_FREE)
    except OSError:
        usable = False
    if usable:
        os.environ["HARNESS_CLUSTER_REGISTRY"] = str(TMPFS / "harness-clusters")


def pytest_sessionstart(session):
    """Find (and on first use install) the server binaries before any test runs.

    In the pytest-xdist controller, or in a run without xdist: a version whose
    binaries cannot be found or installed ends the run here with one line,
    instead of erroring every test, and the workers find the install ready.
    """
    config = session.config
    if hasattr(config, "workerinput"):
        return
    version = config.getoption("--pg-version")
    try:
        with progress.phase(f"PostgreSQL {version} binaries (installed on first use)"):
            servers.find_bin_dir(version)
    except (servers.ServerNotFound, servers.ServerError) as e:
        pytest.exit(str(e), returncode=pytest.ExitCode.TESTS_FAILED)
    progress.say(
        f"the suite starts a PostgreSQL {version} server (one per xdist worker) and "
        "builds the template databases its tests need (the whole chain, "
        "production as Prisma built it, production adopted, production with rows "
        "migrated) before its first test: lines 'setup N: ...' say which, and when "
        "each is done")


#: the quick first run (``-m smoke``): the chain read from disk, the CLI and its
#: exit codes, apply / rollback / status on real servers; no test marked slow
SMOKE_MODULES = frozenset({"test_chain.py", "test_cli.py", "test_cli_environment.py",
                           "test_apply.py"})


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` first, otherwise in collection order: pytest-xdist
    hands tests out in this order, and a long test handed out last keeps one
    worker busy while the other has nothing left to do. The tests of
    SMOKE_MODULES that are not slow are marked ``smoke``."""
    for item in items:
        if item.path.name in SMOKE_MODULES and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.smoke)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_report_header(config):
    version = config.getoption("--pg-version")
    try:
        bin_dir = servers.find_bin_dir(version)
        return (f"PostgreSQL major version under test: {version} "
                f"({servers.binary_version(bin_dir)}, {bin_dir})")
    except (servers.ServerNotFound, servers.ServerError):
        return f"PostgreSQL major version under test: {version}"


class TestDB:
    """A database in the session cluster, with connections per role."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, cluster: servers.Cluster, name: str):
        self.cluster = cluster
        self.name = name
        self._conns: list[psycopg.Connection] = []

    def __repr__(self) -> str:
        return f"TestDB({self.name!r}, port={self.cluster.port})"

    def dsn(self, role: str = "owner") -> str:
        """libpq URI for ``role``: owner, app, worker, readonly, hostile or superuser."""
        try:
            user = ROLE_NAMES[role]
        except KeyError:
            raise ValueError(f"unknown role {role!r}; one of {sorted(ROLE_NAMES)}") from None
        return self.cluster.dsn(user=user, dbname=self.name)

    def connect(self, role: str = "owner", autocommit: bool = True) -> psycopg.Connection:
        """A new connection as ``role``, closed at teardown."""
        conn = psycopg.connect(self.dsn(role), autocommit=autocommit)
        self._conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._conns:
            if not conn.closed:
                conn.close()
        self._conns.clear()


class _Janitor(DatabaseJanitor):
    """Clones with STRATEGY file_copy (PostgreSQL 15+): with fsync off it is the
    faster way to copy a small template, and the clone drops faster too."""

    def _build_create_database_sql(self) -> sql.Composed:
        query = super()._build_create_database_sql()
        if self.template_dbname:
            query = query + sql.SQL(" STRATEGY file_copy")
        return query


def _create_db(cluster: servers.Cluster, dbname: str, **kwargs) -> DatabaseJanitor:
    """CREATE DATABASE through pytest-postgresql's janitor, then hand it to forgea_owner.

    The janitor connects as the superuser: before cloning it terminates every
    session on the template, and on PostgreSQL 15 only a superuser may
    terminate e.g. an autovacuum worker.  Objects inside a clone keep their
    owner (forgea_owner, who ran the migrations).
    """
    janitor = _Janitor(
        user=servers.SUPERUSER, host="127.0.0.1", port=cluster.port, dbname=dbname,
        connection_timeout=10, **kwargs,
    )
    for attempt in range(5):
        try:
            janitor.init()
            break
        except psycopg.errors.ObjectInUse:
            # a session (autovacuum) reached the template between terminate and CREATE
            if attempt == 4:
                raise
            time.sleep(0.2)
    with cluster.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(dbname), sql.Identifier(OWNER)))
    return janitor


def _apply(cluster: servers.Cluster, dbname: str, to: str | None, sql_root: Path) -> None:
    from harness.apply import apply  # imported late: only the database fixtures need it

    apply(cluster.dsn(user=OWNER, dbname=dbname), to=to, sql_root=sql_root)


def _ensure_login_roles(cluster: servers.Cluster) -> None:
    """LOGIN members of the group roles (which migration V0002 creates)."""
    with cluster.connect() as conn:
        for login, group in LOGIN_ROLES.values():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
            if group:
                conn.execute(sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(group), sql.Identifier(login)))


# -------------------------------------------------------------------------- session


@pytest.fixture(scope="session")
def pg_version(request) -> int:
    return int(request.config.getoption("--pg-version"))


@pytest.fixture(scope="session")
def sql_root() -> Path:
    return REPO_ROOT / "sql"


@pytest.fixture(scope="session")
def pg_cluster(pg_version):
    # Any failure here (binaries missing, server won't start) errors every test
    # that needs a server: a version that cannot run is a failure, not a skip.
    try:
        with progress.phase(f"starting a throwaway PostgreSQL {pg_version} server"):
            cluster = servers.start_throwaway(pg_version)
    except (servers.ServerNotFound, servers.ServerError) as e:
        pytest.fail(f"PostgreSQL {pg_version} cannot be started: {e}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def owner_role(pg_cluster) -> str:
    """The non-superuser role that runs the migrations and owns the objects."""
    with pg_cluster.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB").format(
            sql.Identifier(OWNER)))
    return OWNER


def _build_template(cluster, name, to, sql_root, *, source=None, prepare=None):
    """A template database: cloned from ``source`` (or empty), ``prepare(conn)``
    run as the owner, then the chain applied through ``to`` (None: all; "": none)."""
    what = ", ".join(x for x in (
        f"cloned from {source}" if source else "",
        prepare.__name__ if prepare else "",
        "the whole chain" if to is None else f"the chain through {to}" if to else "") if x)
    with progress.phase(f"template database {name} ({what})"):
        return _build_template_now(cluster, name, to, sql_root, source, prepare)


def _build_template_now(cluster, name, to, sql_root, source, prepare):
    janitor = _create_db(cluster, name, as_template=True, template_dbname=source)
    try:
        if prepare is not None:
            with psycopg.connect(cluster.dsn(user=OWNER, dbname=name),
                                 autocommit=True) as conn:
                prepare(conn)
        if to != "":
            _apply(cluster, name, to, sql_root)
    except BaseException:
        janitor.drop()
        raise
    if to != "":
        _ensure_login_roles(cluster)  # the group roles exist once V0002 ran
    return janitor


@pytest.fixture(scope="session")
def tmpl_full(pg_cluster, owner_role, sql_root) -> str:
    janitor = _build_template(pg_cluster, "tmpl_full", None, sql_root)
    yield janitor.dbname
    janitor.drop()


@pytest.fixture(scope="session")
def tmpl_upstream(pg_cluster, owner_role, sql_root) -> str:
    """Production exactly as the seven real Prisma migrations built it (no rows)."""
    janitor = _build_template(pg_cluster, "tmpl_upstream", "", sql_root,
                              prepare=upstream.build_production)
    yield janitor.dbname
    janitor.drop()


@pytest.fixture(scope="session")
def tmpl_baseline(pg_cluster, tmpl_upstream, sql_root) -> str:
    """Production adopted by the harness (V0001 recorded, not run), then V0002."""
    janitor = _build_template(pg_cluster, "tmpl_baseline", BASELINE_TARGET, sql_root,
                              source=tmpl_upstream)
    yield janitor.dbname
    janitor.drop()


@pytest.fixture(scope="session")
def tmpl_prod_full(pg_cluster, tmpl_upstream, sql_root) -> str:
    """Production with production-like rows, adopted and migrated with the whole chain."""
    from tests.prodlike import seed_production_like

    janitor = _build_template(pg_cluster, "tmpl_prod_full", None, sql_root,
                              source=tmpl_upstream, prepare=seed_production_like)
    yield janitor.dbname
    janitor.drop()


@pytest.fixture(scope="session")
def reference_snapshot(pg_cluster, tmpl_full) -> dict:
    """What the whole chain creates (harness.reference's snapshot), taken from a
    clone of tmpl_full: that template is exactly what harness.reference.build_on
    makes (the files applied from scratch on this cluster), so the chain is not
    applied a second time. harness verify's definitions check compares live
    databases with it."""
    from harness import reference
    with _fresh_db(pg_cluster, tmpl_full, "t_reference") as clone, \
            clone.connect("owner") as conn:
        return reference.snapshot_of(conn)


@pytest.fixture(scope="session")
def login_roles(tmpl_baseline) -> dict[str, str]:
    """Role key -> login role name; the roles exist once any template is built."""
    return dict(ROLE_NAMES)


# -------------------------------------------------------------------------- per test


@pytest.fixture
def scratch_dir():
    """A fresh directory for data directories or repo copies, removed afterwards.

    Not pytest's ``tmp_path``: pytest keeps ``/tmp/pytest-of-<user>`` at mode
    0700 (and re-applies that whenever another pytest run starts), which the
    ``harness_pg`` server user cannot traverse when we run as root.
    """
    path = Path(tempfile.mkdtemp(prefix="harness-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_db_counter = itertools.count(1)


def _require_running(cluster: servers.Cluster) -> None:
    """Fail at once when this worker's server is gone, instead of letting each
    test spend the janitor's 10 s connection retries on a refused port."""
    if not cluster.postmaster_alive():
        pytest.fail(f"the PostgreSQL server of this test process ({cluster}) is no longer "
                    "running: every later test that needs it fails the same way",
                    pytrace=False)


@contextlib.contextmanager
def _fresh_db(cluster: servers.Cluster, template: str | None, prefix: str):
    """A new database cloned from ``template`` (empty when None), dropped on exit."""
    name = f"{prefix}_{os.getpid()}_{next(_db_counter)}"
    _require_running(cluster)
    janitor = _create_db(cluster, name, template_dbname=template)
    testdb = TestDB(cluster, name)
    try:
        yield testdb
    finally:
        testdb.close()
        janitor.drop()


@pytest.fixture
def db(pg_cluster, tmpl_full):
    """Fresh database cloned from tmpl_full (whole chain applied)."""
    with _fresh_db(pg_cluster, tmpl_full, "t_full") as testdb:
        yield testdb


@pytest.fixture
def baseline_db(pg_cluster, tmpl_baseline):
    """Fresh database cloned from tmpl_baseline (migrations up to V0002__roles_and_archive)."""
    with _fresh_db(pg_cluster, tmpl_baseline, "t_base") as testdb:
        yield testdb


@pytest.fixture
def upstream_db(pg_cluster, tmpl_upstream):
    """Fresh database cloned from tmpl_upstream: production as Prisma built it."""
    with _fresh_db(pg_cluster, tmpl_upstream, "t_up") as testdb:
        yield testdb


@pytest.fixture
def prod_db(pg_cluster, tmpl_prod_full):
    """Fresh database cloned from tmpl_prod_full: migrated production with rows."""
    with _fresh_db(pg_cluster, tmpl_prod_full, "t_prod") as testdb:
        yield testdb


@pytest.fixture
def empty_db(pg_cluster, owner_role):
    """Fresh empty database owned by forgea_owner, nothing applied."""
    with _fresh_db(pg_cluster, None, "t_empty") as testdb:
        yield testdb
