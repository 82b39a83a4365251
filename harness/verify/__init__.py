"""``harness verify``: read-only checks of a live database.

Every check only reads. All of them run in ONE transaction opened ``READ
ONLY`` (``REPEATABLE READ``, so every check sees the same snapshot); it is
never committed, so even a bug here cannot write, and the command works on a
hot standby. Each check runs in its own savepoint: one check that errors (an
object missing on a partly migrated database) is reported as a failure of
that check, under its own name, and the others still run.

:data:`CHECKS` lists every check in the order it runs, one function each;
what each proves is in docs/dba.md (section "What verify checks"). The
modules: :mod:`.report` (Check, Report, the table), :mod:`.queries`,
:mod:`.context` (what the checks share), :mod:`.chain_checks`,
:mod:`.rows`, :mod:`.ledger_checks`, :mod:`.attestations`, :mod:`.privileges`.

Output: a table (check, status, detail) or, with ``--json``,
``{"ok": bool, "checks": [{"name", "status": "pass|fail|info", "findings": [...],
"elapsed_s"}], "reference_s"}`` (``elapsed_s``: the check's wall seconds;
``reference_s``: the seconds spent getting the definitions check's reference,
from its cache or built on a throwaway server; absent with ``--no-reference``).
:func:`run` returns 0 when no check failed, 1 otherwise; the CLI maps errors
(server unreachable: 4) through harness.errors.translate.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psycopg

from .. import chain as chain_mod
from .. import ledger_parts
from ..errors import LocalProblem, _unreachable
from . import attestations, chain_checks, ledger_checks, privileges, rows
from .chain_checks import build_reference, expected_triggers
from .context import Context, applied_files
from .privileges import (EXPECTED_COLUMN_PRIVILEGES, EXPECTED_FUNCTION_EXECUTE,
                         EXPECTED_TABLE_PRIVILEGES)
from .report import Check, Report, render_table

__all__ = ["CHECKS", "Check", "Report", "render_table", "run_checks", "verify", "run",
           "build_reference", "expected_triggers", "EXPECTED_TABLE_PRIVILEGES",
           "EXPECTED_COLUMN_PRIVILEGES", "EXPECTED_FUNCTION_EXECUTE"]

#: (name as printed, function, when it runs: None = always, else the Context
#: attribute that must be set), in the order they run and print
CHECKS: tuple[tuple[str, object, str | None], ...] = (
    ("migration_chain", chain_checks.migration_chain, None),
    ("bookkeeping", chain_checks.bookkeeping, None),
    ("guard_triggers", chain_checks.guard_triggers, None),
    ("constraints_validated", chain_checks.constraints_validated, None),
    ("indexes_valid", chain_checks.indexes_valid, None),
    ("lifecycle_completed_at", rows.lifecycle_completed_at, None),
    ("lab_version_agreement", rows.lab_version_agreement, None),
    ("one_active_session_per_user_lab", rows.one_active_session_per_user_lab, None),
    ("one_active_session_per_repo", rows.one_active_session_per_repo, None),
    ("job_status_consistency", rows.job_status_consistency, None),
    ("one_running_job_per_session", rows.one_running_job_per_session, None),
    ("job_commit_matches_attempt", rows.job_commit_matches_attempt, None),
    ("job_attempt_results", rows.job_attempt_results, None),
    ("session_identity", rows.session_identity, None),
    ("repo_binding_agreement", rows.repo_binding_agreement, None),
    ("restorable_values", rows.restorable_values, None),
    ("verified_pass_has_pass_attempt", rows.verified_pass_has_pass_attempt, None),
    ("sha_format", rows.sha_format, None),
    ("lab_attempt_chain", ledger_checks.lab_attempt_chain, None),
    ("lab_attempt_chain_recomputed", ledger_checks.lab_attempt_chain_recomputed, None),
    ("checkpoint", ledger_checks.checkpoint, "checkpoint"),
    ("worker_attestations", attestations.worker_attestations, None),
    ("definitions", chain_checks.definitions, "reference"),
    ("extensions", privileges.extensions, None),
    ("role_attributes", privileges.role_attributes, None),
    ("ownership", privileges.ownership, None),
    ("table_privileges", privileges.table_privileges, None),
    ("column_privileges", privileges.column_privileges, None),
    ("function_privileges", privileges.function_privileges, None),
    ("schema_privileges", privileges.schema_privileges, None),
    ("security_definer", privileges.security_definer, None),
    ("login_role_timeouts", privileges.login_role_timeouts, None),
    ("message_language", privileges.message_language, None),
)


def _denied_message(e: psycopg.Error) -> str:
    primary = (e.diag.message_primary or str(e)).strip()
    return f"could not run: {primary} (SQLSTATE {e.sqlstate}: the connecting role lacks " \
           "this privilege; the other checks ran)"


def _run_one(conn, name: str, fn, ctx: Context) -> Check:
    """One check in a savepoint. Whatever it raises, it ends alone: a missing
    privilege (42501) makes it ``could_not_run`` naming what was denied; a
    problem on this machine (LocalProblem) ``could_not_run`` (local); any other
    error, of the database or of the check's own code (a value it cannot parse),
    a failure of that check naming the error. A lost connection is re-raised
    (harness.errors turns it into exit 4): no later check could run either."""
    t0 = time.monotonic()
    c = _run_check(conn, name, fn, ctx)
    c.elapsed_s = time.monotonic() - t0
    return c


def _run_check(conn, name: str, fn, ctx: Context) -> Check:
    c = Check(name)
    try:
        with conn.transaction():  # savepoint: one broken check does not stop the rest
            fn(c, ctx)
    except psycopg.errors.InsufficientPrivilege as e:
        c = Check(name)
        c.could_not_run(name, _denied_message(e))
    except psycopg.Error as e:
        if _unreachable(e) or conn.closed or conn.broken:
            raise
        c = Check(name)
        c.fail(name, f"check errored: SQLSTATE {e.sqlstate}: "
                     f"{(e.diag.message_primary or str(e)).strip()}")
    except LocalProblem as e:
        c = Check(name)
        c.could_not_run(name, e.message, local=True)
    except Exception as e:  # noqa: BLE001 -- a check's own bug or a value it cannot read
        if conn.closed or conn.broken:
            raise
        c = Check(name)
        c.fail(name, f"check errored: {type(e).__name__}: {e}")
    return c


def _read_applied(conn, files) -> tuple[dict, list, str | None]:
    """applied_files in a savepoint: (state, applied, None), or ({}, [], why) when
    the bookkeeping cannot be read (a role without USAGE on its schema)."""
    try:
        with conn.transaction():
            state, applied = applied_files(conn, files)
        return state, applied, None
    except psycopg.errors.InsufficientPrivilege as e:
        return {}, [], _denied_message(e)
    except psycopg.Error as e:
        if _unreachable(e) or conn.closed or conn.broken:
            raise
        return {}, [], f"could not read the bookkeeping: SQLSTATE {e.sqlstate}: " \
                       f"{(e.diag.message_primary or str(e)).strip()}"


def _begin(conn) -> None:
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    conn.execute("SET LOCAL search_path = pg_catalog, public")
    conn.execute("SET LOCAL statement_timeout = '10min'")


def _share_ledger_snapshot(conn) -> str | None:
    """The transaction's snapshot, exported for the processes that share the
    recomputation of a large ledger (harness.ledger_parts), before any check:
    the checks run in savepoints, where no snapshot can be exported. None for a
    small ledger, or when the server refuses (the transaction is begun again,
    nothing read yet: the recomputation then runs in this process)."""
    try:
        with conn.transaction():
            parts = ledger_parts.choose_parts(conn)
    except psycopg.Error as e:
        if _unreachable(e) or conn.closed or conn.broken:
            raise
        return None
    try:
        return ledger_parts.export_if_shared(conn, parts)
    except psycopg.Error as e:
        if _unreachable(e) or conn.closed or conn.broken:
            raise
        conn.rollback()
        _begin(conn)
        return None


def run_checks(conn: psycopg.Connection, sql_root: Path | None = None,
               require_complete: bool = True, checkpoint: dict | None = None,
               reference_snapshot: dict | None = None,
               worker_keys: dict | None = None) -> Report:
    """All checks through ``conn`` (not in a transaction yet), in one READ ONLY one.

    Nothing is written, not even a temporary table, so this runs as a role that
    may only read and on a hot standby."""
    root = Path(sql_root) if sql_root else chain_mod.default_sql_root()
    files, problems = chain_mod.scan(root)
    was_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        _begin(conn)
        ledger_snapshot = _share_ledger_snapshot(conn)
        state, applied, state_error = _read_applied(conn, files)
        ctx = Context(conn=conn, files=files, chain_problems=problems, state=state,
                      applied=applied, require_complete=require_complete,
                      checkpoint=checkpoint, reference=reference_snapshot,
                      state_error=state_error, worker_keys=worker_keys,
                      ledger_snapshot=ledger_snapshot)
        checks = [_run_one(conn, name, fn, ctx) for name, fn, needs in CHECKS
                  if needs is None or getattr(ctx, needs) is not None]
    finally:
        if not (conn.closed or conn.broken):
            conn.rollback()   # never commit: nothing here writes, and nothing could
            conn.autocommit = was_autocommit
    return Report(checks)


def verify(dsn: str, *, sql_root: Path | None = None, require_complete: bool = True,
           checkpoint: dict | None = None, reference_snapshot: dict | str | None = None,
           worker_keys: dict | None = None) -> Report:
    """``reference_snapshot``: a snapshot (harness.reference), "build" to build one
    for the applied files, or None to skip the definitions check."""
    with psycopg.connect(dsn, autocommit=True, application_name="harness-verify") as conn:
        reference_s = None
        if reference_snapshot == "build":
            t0 = time.monotonic()
            reference_snapshot = build_reference(conn, sql_root)
            reference_s = time.monotonic() - t0
        report = run_checks(conn, sql_root=sql_root, require_complete=require_complete,
                            checkpoint=checkpoint, reference_snapshot=reference_snapshot,
                            worker_keys=worker_keys)
        report.reference_s = reference_s
        return report


def run(dsn: str, json_output: bool = False, *, sql_root: Path | None = None,
        require_complete: bool = True, checkpoint: dict | None = None,
        reference_snapshot: dict | str | None = "build", worker_keys: dict | None = None,
        out=None) -> int:
    """Run every check against ``dsn``, print the result; return the exit code
    (:attr:`Report.exit_code`: 0, 1 a check failed, 5 a check could not run for a
    problem on this machine). Connection errors propagate to the caller."""
    out = out or sys.stdout
    report = verify(dsn, sql_root=sql_root, require_complete=require_complete,
                    checkpoint=checkpoint, reference_snapshot=reference_snapshot,
                    worker_keys=worker_keys)
    if json_output:
        out.write(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    else:
        out.write(render_table(report) + "\n")
    return report.exit_code
