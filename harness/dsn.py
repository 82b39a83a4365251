"""DSN helpers: checking a DSN before connecting, its ``connect_timeout``, printing
it without its password, turning libpq parameters into the URI yoyo wants, and the
harness's plain connections (``application_name = 'harness'`` with its
``lock_timeout`` and ``statement_timeout``)."""

from __future__ import annotations

import getpass
import os
import re
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import UsageError, connection_failed

#: lock_timeout of each attempt: the longest the application queues behind a lock
#: request of the migration (see :mod:`harness.lock_retry`)
DEFAULT_LOCK_TIMEOUT = "100ms"


#: seconds libpq waits for a server before giving up, unless the DSN or
#: $PGCONNECT_TIMEOUT says otherwise: an unreachable host fails in seconds
DEFAULT_CONNECT_TIMEOUT = 10

#: libpq environment variables that say which server, database, role or
#: credentials to use: when one is set (and neither --target nor DATABASE_URL is),
#: the harness connects with an empty conninfo and libpq applies them. Session
#: defaults alone (PGAPPNAME, PGOPTIONS, PGCONNECT_TIMEOUT, PGTZ, ...) do not
#: choose a server.
LIBPQ_CONNECTION_ENV = (
    "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE",
    "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGREQUIRESSL", "PGSSLCERT", "PGSSLKEY",
    "PGSSLROOTCERT", "PGGSSENCMODE", "PGCHANNELBINDING", "PGTARGETSESSIONATTRS",
    "PGREQUIREAUTH", "PGLOADBALANCEHOSTS",
)


def parse(dsn: str, *, origin: str = "--target") -> dict:
    """The DSN's parameters; a malformed one (an unknown option, a missing ``=``, a
    bad URI) is a usage error naming where it came from, before any connection."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as e:
        prisma = re.search(r"invalid URI query parameter: \"?(schema|connection_limit|"
                           r"pool_timeout|pgbouncer|sslaccept|socket_timeout|"
                           r"statement_cache_size)\b", str(e))
        raise UsageError(f"malformed DSN in {origin}: {str(e).strip()}", details=(
            [f"{prisma[1]} is a Prisma URL parameter libpq does not know; give the "
             "harness the URL without it (as psql needs it)"] if prisma else []))


def libpq_env() -> list[str]:
    """The libpq connection variables set (non-empty) in the environment."""
    return [v for v in LIBPQ_CONNECTION_ENV if os.environ.get(v)]


def with_connect_timeout(dsn: str, seconds: int = DEFAULT_CONNECT_TIMEOUT) -> str:
    """``dsn`` with ``connect_timeout`` added unless it, or $PGCONNECT_TIMEOUT, sets one.
    A URI stays a URI; a key=value string (or the empty one) gains a pair."""
    if "connect_timeout" in conninfo_to_dict(dsn) or os.environ.get("PGCONNECT_TIMEOUT"):
        return dsn
    if re.match(r"^postgres(?:ql)?://", dsn):
        base, _, frag = dsn.partition("#")
        return base + ("&" if "?" in base else "?") + f"connect_timeout={seconds}" + (
            f"#{frag}" if frag else "")
    return f"{dsn} connect_timeout={seconds}".strip()


def describe(dsn: str) -> str:
    """Where ``dsn`` connects, for printing: its own host, port, user and database,
    the libpq environment's (and libpq's defaults) for those it leaves out; never
    the password, never connect_timeout."""
    d = {k: v for k, v in conninfo_to_dict(dsn).items() if v not in (None, "")}
    env = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE",
           "service": "PGSERVICE", "hostaddr": "PGHOSTADDR", "sslmode": "PGSSLMODE"}
    for key, var in env.items():
        if key not in d and os.environ.get(var):
            d[key] = os.environ[var]
    if "service" not in d:
        d.setdefault("port", "5432")
        try:
            d.setdefault("user", getpass.getuser())
        except Exception:
            pass
        d.setdefault("dbname", d.get("user", ""))
    d.pop("password", None)
    d.pop("connect_timeout", None)
    return to_uri(d, scheme="postgresql")


def redact(dsn: str) -> str:
    """The DSN with any password (and connect_timeout) removed, for printing; a DSN
    that leaves the server to the libpq environment is shown as :func:`describe`
    resolves it."""
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return dsn
    if not (d.get("host") or d.get("hostaddr") or d.get("service")):
        return describe(dsn)
    if ("password" not in d and "connect_timeout" not in d
            and ":" not in dsn.split("@")[0].split("//")[-1]):
        return dsn
    d.pop("password", None)
    d.pop("connect_timeout", None)
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


def session_options(lock_timeout: str, statement_timeout: str) -> str:
    """``options`` for libpq setting both timeouts; a malformed value is a usage error."""
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
                               options=session_options(lock_timeout, statement_timeout))
    except psycopg.OperationalError as e:
        raise connection_failed(e, redact(dsn))
    return conn
