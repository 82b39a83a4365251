"""DSN helpers: printing a DSN without its password, turning libpq parameters into
the URI yoyo wants, and the harness's plain connections (``application_name =
'harness'`` with its ``lock_timeout`` and ``statement_timeout``)."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import ServerUnavailable, UsageError

#: lock_timeout of each attempt: the longest the application queues behind a lock
#: request of the migration (see :mod:`harness.lock_retry`)
DEFAULT_LOCK_TIMEOUT = "100ms"


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
        raise ServerUnavailable(f"cannot connect to {redact(dsn)}: {str(e).strip()}")
    return conn
