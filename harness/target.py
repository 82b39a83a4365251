"""Which database and which sql/ tree a command works on.

``resolve_target`` turns ``--target`` (or its absence: the embedded PostgreSQL
18 kept under ./.harness/, started on demand) into a DSN; ``sql_root`` is the
chain a command reads ($HARNESS_SQL_ROOT when set, else the repository's).
Commands and library modules import these from here, never from the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import HarnessError, ServerUnavailable


def repo_root() -> Path:
    from .chain import find_repo_root
    return find_repo_root()


def sql_root() -> Path:
    """The sql/ tree: $HARNESS_SQL_ROOT when set (tests, reviews of a branch), else the repo's."""
    env = os.environ.get("HARNESS_SQL_ROOT")
    return Path(env) if env else repo_root() / "sql"


def resolve_target(target: str | None) -> str:
    """``target`` itself, or the DSN of the embedded server (started when needed)."""
    if target:
        return target
    try:
        from . import servers
        cluster = servers.embedded_default(repo_root())
        return cluster.dsn(dbname=servers.EMBEDDED_DBNAME)
    except HarnessError:
        raise
    except Exception as e:  # any failure to start the embedded server
        raise ServerUnavailable(f"could not start the embedded PostgreSQL server: {e}")
