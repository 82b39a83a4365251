"""Harness exceptions and their CLI exit codes.

Exit codes (also in ``harness --help``):

* 0 -- success
* 1 -- a database error, or a check / lint failure
* 2 -- usage error (bad option, unknown version, ...)
* 3 -- refused, or stopped cleanly at a recorded version: drift, adoption
  mismatch, another run holds the migration lock, a file refused (pre-flight
  FM001, rollback FM002, in the probe or the real run), the locks a file needs
  were not granted within the retry budget; the message names the version the
  database is at and what, if anything, this run committed
* 4 -- the server could not be started or reached
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_SERVER = 4


class HarnessError(Exception):
    """Base class: ``str(exc)`` is the one clear line the CLI prints."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join("  " + d for d in self.details)


class ChainError(HarnessError):
    """The migration chain on disk is inconsistent (duplicate, missing rollback...)."""

    exit_code = EXIT_FAILED


class UsageError(HarnessError):
    exit_code = EXIT_USAGE


class RefusedError(HarnessError):
    """The harness refused to proceed; nothing was changed."""

    exit_code = EXIT_REFUSED


class DriftError(RefusedError):
    pass


class AdoptionMismatch(RefusedError):
    pass


class LockHeld(RefusedError):
    pass


class RollbackRefused(RefusedError):
    """A rollback file refused (FM002) or the baseline of an adopted database."""

    def __init__(self, message: str, *, details: list[str] | None = None,
                 sqlstate: str | None = None):
        super().__init__(message, details=details)
        self.sqlstate = sqlstate


class ServerUnavailable(HarnessError):
    exit_code = EXIT_SERVER


class MigrationFailed(HarnessError):
    """A migration (or rollback) file failed with a PostgreSQL error."""

    exit_code = EXIT_FAILED

    def __init__(self, message, *, sqlstate=None, file=None, details=None):
        super().__init__(message, details=details)
        self.sqlstate = sqlstate
        self.file = file


class PreflightRefused(MigrationFailed):
    """A migration's pre-flight check refused (FM001): the run stopped at a
    recorded version before that file changed anything."""

    exit_code = EXIT_REFUSED


class LockNotGranted(MigrationFailed):
    """The locks a step needs were not granted within the retry budget (every
    attempt hit lock_timeout): the run stopped at a recorded version."""

    exit_code = EXIT_REFUSED


def describe_pg_error(exc: BaseException, *, file: str | None = None,
                      sql: str | None = None) -> tuple[str, list[str]]:
    """One clear line for a psycopg error, plus DETAIL/HINT/CONTEXT lines.

    ``sql`` (the text that was executed) lets us turn the error position
    into a line number of ``file``.
    """
    diag = getattr(exc, "diag", None)
    sqlstate = getattr(exc, "sqlstate", None) or (diag.sqlstate if diag else None)
    primary = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
    where = file or ""
    if diag is not None and sql and diag.statement_position:
        try:
            pos = int(diag.statement_position)
            line = sql.count("\n", 0, max(pos - 1, 0)) + 1
            where = f"{file}:{line}" if file else f"line {line}"
        except (TypeError, ValueError):
            pass
    head = f"{where}: " if where else ""
    line = f"{head}ERROR {sqlstate}: {primary}" if sqlstate else f"{head}ERROR: {primary}"
    extra = []
    if diag is not None:
        if diag.message_detail:
            extra.append("DETAIL: " + diag.message_detail)
        if diag.message_hint:
            extra.append("HINT: " + diag.message_hint)
        if diag.context and sqlstate not in ("FM001",):
            ctx = diag.context.strip().splitlines()
            if ctx:
                extra.append("CONTEXT: " + " | ".join(c.strip() for c in ctx[:3]))
    return line, extra
