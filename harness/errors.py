"""Harness exceptions, the CLI's exit codes, and the one translation between them.

:data:`EXIT_CODES` is the exit-code table (``harness --help`` prints it);
:func:`translate` turns any error a command raises into the lines the CLI
prints and the exit code it returns. Nothing else maps errors to exit codes.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_SERVER = 4
#: could not check: a problem on the operator's side (cache, binaries, scratch server); LocalProblem
EXIT_LOCAL = 5
#: reserved: the server answered but refused the credentials
EXIT_AUTH = 6
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

#: code -> what it means, as ``harness --help`` prints it
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "a database error, or a check / lint failure",
    EXIT_USAGE: "usage error (bad option, unknown version)",
    EXIT_REFUSED: "refused, or stopped cleanly at a recorded version: drift (apply and "
                  "rollback), adoption mismatch, another run holds the migration lock, "
                  "a pre-flight (FM001) or rollback (FM002) refusal in the probe or the "
                  "real run, locks not granted within the retry budget; the message "
                  "names the version the database is at and what this run committed",
    EXIT_SERVER: "the PostgreSQL server could not be started or reached",
    EXIT_LOCAL: "could not check: a problem on this machine, not in the database (an "
                "unusable cache directory, server binaries missing, no scratch server "
                "for verify's reference); the message names it",
}


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


class LocalProblem(HarnessError):
    """Could not check: a problem on the operator's machine (cache directory,
    server binaries, a scratch server), never a verdict on the database."""

    exit_code = EXIT_LOCAL


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


def _unreachable(exc: BaseException) -> bool:
    """A psycopg error that means the server was not reached (or the link to it broke)."""
    import psycopg
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


def translate(exc: BaseException) -> tuple[str, int] | None:
    """The message (one line, then indented detail lines) and exit code for ``exc``,
    or None when it is not an error the harness knows (a bug: let it raise).

    HarnessError: its own message and code. A psycopg error that never reached
    the server or lost it (no SQLSTATE, class 08, or a shutdown 57P0x): exit 4;
    a statement error (a lock_timeout, a cancel, a constraint) is not. Any other: one
    line ``ERROR <SQLSTATE>: message`` with its DETAIL/HINT/CONTEXT, exit 1.
    """
    import psycopg
    if isinstance(exc, HarnessError):
        return exc.render(), exc.exit_code
    if _unreachable(exc):
        return f"cannot reach the database: {str(exc).strip()}", EXIT_SERVER
    if isinstance(exc, psycopg.Error):
        line, extra = describe_pg_error(exc)
        return "\n  ".join([line, *extra]), EXIT_FAILED
    return None
