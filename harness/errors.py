"""Harness exceptions, the CLI's exit codes, and the one translation between them.

:data:`EXIT_CODES` is the exit-code table (``harness --help`` prints it);
:func:`translate` turns any error a command raises into the lines the CLI
prints and the exit code it returns. Nothing else maps errors to exit codes.
"""

from __future__ import annotations

import re

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
                  "a data pre-condition of a pending file that does not hold (preflight), "
                  "a pre-flight (FM001) or rollback (FM002) refusal in the probe or the "
                  "real run, locks not granted within the retry budget; the message "
                  "names the version the database is at and what this run committed",
    EXIT_SERVER: "the PostgreSQL server could not be started or reached (refused, "
                 "unknown host, or no answer within connect_timeout)",
    EXIT_LOCAL: "could not check: a problem on this machine, not in the database (an "
                "unusable cache directory, server binaries missing, no scratch server "
                "for verify's reference); the message names it",
    EXIT_AUTH: "the server answered but refused the credentials (wrong password, "
               "unknown role, no pg_hba.conf entry)",
    EXIT_SIGINT: "interrupted by SIGINT (Ctrl-C); apply and rollback first say where "
                 "the database is, as for exit 3, and the next apply resumes",
    EXIT_SIGTERM: "terminated by SIGTERM; as for 130",
}

#: the exit codes each command can return (its ``--help`` lists these, with the
#: meanings of :data:`EXIT_CODES`)
COMMAND_EXIT_CODES: dict[str, tuple[int, ...]] = {
    "apply": (0, 1, 2, 3, 4, 6, 130, 143),
    "rollback": (0, 1, 2, 3, 4, 6, 130, 143),
    "status": (0, 1, 2, 4, 6, 130, 143),
    "plan": (0, 1, 2, 3, 4, 6, 130, 143),
    "preflight": (0, 1, 2, 3, 4, 6, 130, 143),
    "repair": (0, 1, 2, 3, 4, 5, 6, 130, 143),
    "checkpoint": (0, 1, 2, 4, 6, 130, 143),
    "verify": (0, 1, 2, 4, 5, 6, 130, 143),
    "bench": (0, 1, 2, 4, 6, 130, 143),
    "bench-plot": (0, 1, 2, 5, 130, 143),
    "lint": (0, 1, 2, 130, 143),
    "schema": (0, 1, 2, 5, 130, 143),
    "stop": (0, 2, 5, 130, 143),
    "attest": (0, 2, 130, 143),
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


class AuthenticationFailed(HarnessError):
    """The server answered but refused the credentials."""

    exit_code = EXIT_AUTH


class LocalProblem(HarnessError):
    """Could not check: a problem on the operator's machine (cache directory,
    server binaries, a scratch server), never a verdict on the database."""

    exit_code = EXIT_LOCAL


class Interrupted(HarnessError):
    """SIGINT or SIGTERM: the run stopped; the message says where the database is."""

    def __init__(self, message: str, *, signal_name: str = "SIGINT",
                 details: list[str] | None = None):
        super().__init__(message, details=details)
        self.signal_name = signal_name
        self.exit_code = EXIT_SIGTERM if signal_name == "SIGTERM" else EXIT_SIGINT


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler; a KeyboardInterrupt, so that psycopg
    cancels the running statement on the server exactly as for Ctrl-C."""


def signal_name(exc: BaseException) -> str:
    """'SIGTERM' for :class:`Terminated`, else 'SIGINT'."""
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


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


class PreflightFailed(RefusedError):
    """A data pre-condition of a pending file does not hold (``harness preflight``,
    run first by plan, apply --dry-run and apply): refused before anything changed,
    or, for one evaluated right before its file, before that file changed anything."""


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


_AUTH_MESSAGE = re.compile(
    r"password authentication failed|authentication failed for user|no password supplied|"
    r"pg_hba\.conf|role \"[^\"]*\" does not exist|password is required|"
    r"server requested .*password", re.I)


def auth_failed(exc: BaseException) -> bool:
    """A psycopg error that means the server refused the credentials (SQLSTATE
    28P01 / 28000, or libpq's message when the error carries no SQLSTATE)."""
    import psycopg
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state in ("28P01", "28000") or bool(_AUTH_MESSAGE.search(str(exc)))


def connection_failed(exc: BaseException, shown: str) -> HarnessError:
    """The error for a connection to ``shown`` (a redacted DSN) that failed:
    refused credentials (exit 6) or a server not reached (exit 4)."""
    text = f"cannot connect to {shown}: {str(exc).strip()}"
    if auth_failed(exc):
        return AuthenticationFailed(text)
    return ServerUnavailable(text)


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
    if auth_failed(exc):
        return f"authentication failed: {str(exc).strip()}", EXIT_AUTH
    if _unreachable(exc):
        return f"cannot reach the database: {str(exc).strip()}", EXIT_SERVER
    if isinstance(exc, psycopg.Error):
        line, extra = describe_pg_error(exc)
        return "\n  ".join([line, *extra]), EXIT_FAILED
    return None
