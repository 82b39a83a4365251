"""Which database and which sql/ tree a command works on.

``resolve_target`` picks the database as libpq tools do: ``--target``; else
``$DATABASE_URL``; else, when a libpq connection variable is set (``PGHOST``,
``PGDATABASE``, ``PGSERVICE``, ...; :data:`harness.dsn.LIBPQ_CONNECTION_ENV`),
an empty conninfo that libpq completes from them; else the embedded PostgreSQL
18 kept under ./.harness/, started on demand. A malformed DSN is a usage error
(exit 2) before any connection; ``connect_timeout`` (10 s) is added unless the
DSN or ``$PGCONNECT_TIMEOUT`` sets one; and the command's first line, on stderr,
names the target (password removed) and where it came from, so a PGHOST that
points elsewhere can never silently give way to the embedded server.
``sql_root`` is the chain a command reads ($HARNESS_SQL_ROOT when set, else
the repository's). Commands and library modules import these from here, never
from the CLI.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .dsn import describe, libpq_env, parse, with_connect_timeout
from .errors import HarnessError, ServerUnavailable


def repo_root() -> Path:
    from .chain import find_repo_root
    return find_repo_root()


def sql_root() -> Path:
    """The sql/ tree: $HARNESS_SQL_ROOT when set (tests, reviews of a branch), else the repo's."""
    env = os.environ.get("HARNESS_SQL_ROOT")
    return Path(env) if env else repo_root() / "sql"


@dataclass(frozen=True)
class Target:
    """A resolved target: the DSN to connect with, how to print it, where it came from."""

    dsn: str
    shown: str
    source: str

    def announce(self, err=None) -> None:
        print(f"harness: target {self.shown} (from {self.source})",
              file=err or sys.stderr, flush=True)


def resolve(target: str | None) -> Target:
    """The target of a command (see the module docstring), without announcing it."""
    if target:
        origin, dsn = "--target", target
    elif os.environ.get("DATABASE_URL"):
        origin, dsn = "DATABASE_URL", os.environ["DATABASE_URL"]
    elif libpq_env():
        origin, dsn = "/".join(libpq_env()), ""
    else:
        return _embedded()
    parse(dsn, origin=origin)
    return Target(with_connect_timeout(dsn), describe(dsn), origin)


def _embedded() -> Target:
    try:
        from . import servers
        cluster = servers.embedded_default(repo_root())
        dsn = cluster.dsn(dbname=servers.EMBEDDED_DBNAME)
    except HarnessError:
        raise
    except Exception as e:  # any failure to start the embedded server
        raise ServerUnavailable(f"could not start the embedded PostgreSQL server: {e}")
    return Target(dsn, describe(dsn), "the embedded server under ./.harness/; no --target, "
                  "DATABASE_URL or PG* variable is set")


def resolve_target(target: str | None, *, announce: bool = True) -> str:
    """The DSN of a command's target; its first line (stderr) names it."""
    t = resolve(target)
    if announce:
        t.announce()
    return t.dsn
