"""Apply and roll back migrations through yoyo-migrations, closing its gaps.

This module is the orchestration; each job has a module of its own:

* :mod:`harness.dsn`: DSN helpers and plain connections;
* :mod:`harness.migration_lock`: one run per database (an advisory lock);
* :mod:`harness.bookkeeping`: where the harness records what is applied;
* :mod:`harness.lock_retry`: short lock timeouts, retried with jittered backoff;
* :mod:`harness.session`: the migration connection those hang on;
* :mod:`harness.runner`: ONE file runner for both directions (atomicity, the
  recovery story of no-transaction files);
* :mod:`harness.probe`: the rollback probe;
* :mod:`harness.adoption`: adopting production's baseline;
* :mod:`harness.chain_state`: the files against the bookkeeping (status, drift,
  the refusals);
* :mod:`harness.plan_sql`: ``plan`` and the ``plan --sql`` script.

:func:`apply` and :func:`rollback` share one code path: each decides its steps
(apply: adopt or apply each pending file, finishing an interrupted rollback
first; rollback: the probe, then roll back each file newest first) and hands
them to :func:`_execute`, the one loop that runs steps and tells truthfully where
a run stopped.

A run of several files
    Each file commits on its own, so a run that stops half-way (a refusal, a
    lock window that never came, an error) leaves the files before it applied
    (or rolled back). The error then says which files this run committed and
    re-reads the bookkeeping to name the version the database is at now (and
    any incomplete file); a file's own HINT saying "Nothing was changed" is
    narrowed to that file. A refusal by a file (FM001 pre-flight, FM002
    rollback) exits 3 wherever it is raised, in the rollback probe or in the
    real run (rows the application wrote after the probe).

Nothing is created in the database before the lock is held, the chain has been
checked, drift has been ruled out and adoption has been decided.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg

from .adoption import adoption_check
from .bookkeeping import (BOOKKEEPING_SCHEMA, BOOKKEEPING_TABLES, HARNESS_TABLE,
                          LEGACY_SCHEMA, MIGRATION_TABLE, bk, bookkeeping_schema,
                          bookkeeping_tables, read_state)
from .chain import MigrationFile, find, load_chain
from .chain_state import (compute_status, refuse_if_unsafe, refuse_prerelease,
                          refuse_rollback_drift,
                          select_pending, status)
from .dsn import DEFAULT_LOCK_TIMEOUT, connect, redact
from .errors import (AdoptionMismatch, HarnessError, LockNotGranted, PreflightRefused,
                     RefusedError, RollbackRefused, UsageError)
from .lock_retry import (DEFAULT_CONCURRENT_LOCK_TIMEOUT, MAX_LOCK_RETRIES,
                         RETRY_BASE_DELAY, RETRY_MAX_DELAY, LockRetry)
from .migration_lock import LOCK_KEY
from .plan_sql import plan, plan_sql
from .probe import probe_rollback
from .runner import FileRunner, split_statements
from .session import MigrationSession, progress_bar

#: names the CLI, the other modules and the tests use from here
__all__ = [
    "ApplyResult", "RollbackResult", "apply", "rollback", "status", "plan", "plan_sql",
    "progress_bar", "split_statements", "connect", "redact", "find", "load_chain",
    "UsageError", "LockRetry", "LOCK_KEY", "BOOKKEEPING_SCHEMA", "BOOKKEEPING_TABLES",
    "HARNESS_TABLE", "LEGACY_SCHEMA", "MIGRATION_TABLE", "bk", "bookkeeping_schema",
    "bookkeeping_tables", "DEFAULT_LOCK_TIMEOUT", "DEFAULT_CONCURRENT_LOCK_TIMEOUT",
    "MAX_LOCK_RETRIES", "RETRY_BASE_DELAY", "RETRY_MAX_DELAY",
]

Progress = Callable[[str, str], None]


# ---------------------------------------------------------------------------
# results

@dataclass
class ApplyResult:
    target: str
    applied: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)   # dry run: what would run
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.adopted)


@dataclass
class RollbackResult:
    target: str
    rolled_back: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    dry_run: bool = False


# ---------------------------------------------------------------------------
# the one code path of apply and rollback

@dataclass(frozen=True)
class Step:
    """One step of a run: ``op`` 'apply', 'rollback' or 'adopt' of ``file``;
    ``note`` is said before it."""

    op: str
    file: MigrationFile
    note: str | None = None


@contextlib.contextmanager
def _session(target_dsn: str, policy: LockRetry, statement_timeout, progress, err,
             lock_wait: float | None):
    """A migration session holding the migration lock (``lock_wait`` None: not
    taken, for a dry run), closed (and the lock released) at the end."""
    sess = MigrationSession(target_dsn, policy=policy, statement_timeout=statement_timeout,
                            progress=progress, err=err)
    try:
        if lock_wait is not None:
            sess.lock.acquire(lock_wait, sess.say)
        yield sess
    finally:
        sess.close()


def _execute(sess: MigrationSession, files, steps: list[Step], direction: str,
             record: dict[str, list[str]], *, preserve: bool,
             probe_passed: bool = False) -> None:
    """Run ``steps`` in order through the one file runner; a step whose ``op`` is
    in ``record`` is appended to that list once it committed. A step that fails
    stops the run: the error is told by :func:`_stopped`."""
    runner = FileRunner(sess)
    committed: list[str] = []
    step = None
    try:
        for step in steps:
            if step.note:
                sess.say(step.note)
            if step.op == "adopt":
                runner.adopt(step.file)
            else:
                runner.run(step.file, step.op, preserve=preserve)
            if step.op in record:
                record[step.op].append(step.file.id)
                committed.append(step.file.id)
    except HarnessError as e:
        raise _stopped(sess, files, e, direction, committed,
                       step.file.id if step else None, probe_passed=probe_passed) from e


def _recorded_position(sess: MigrationSession, files) -> tuple[str | None, list[dict], str | None]:
    """(last applied version, incomplete files, error) read from the bookkeeping
    after a run stopped; through a new connection when the session's is lost."""
    try:
        if sess.conn.closed or sess.conn.broken:
            with connect(sess.dsn) as conn:
                st = compute_status(files, read_state(conn), None)
        else:
            st = compute_status(files, read_state(sess.conn), None)
    except (psycopg.Error, HarnessError) as e:
        return None, [], str(e).strip().splitlines()[0]
    return st["current"], st["incomplete"], None


_NOTHING_CHANGED = re.compile(r"\b[Nn]othing (?:was )?changed\b\.?")


def _stopped(sess: MigrationSession, files, e: HarnessError, direction: str, done: list[str],
             failing: str | None, probe_passed: bool = False) -> HarnessError:
    """The error of a run that stopped at ``failing``, told truthfully: what this
    run committed before it, the version the bookkeeping records now (re-read),
    any incomplete file, and the next step. A file's own "Nothing was changed"
    is narrowed to that file when earlier files of the run committed. A refusal
    by a file (FM001, FM002) becomes an exit-3 error wherever it was raised."""
    verb = "applied" if direction == "apply" else "rolled back"
    current, incomplete, unreadable = _recorded_position(sess, files)
    where = (f"the database is now at {current} (its last applied version)" if current
             else "the database now has no applied version" if not unreadable
             else f"the bookkeeping could not be read again ({unreadable}); "
                  "`harness status` shows where the database is")
    summary = [f"this run {verb} and committed {len(done)} file(s) before "
               f"{failing or 'it'}: {', '.join(done)}" if done
               else f"this run committed no file before {failing or 'it'}", where]
    summary += [f"{i['id']} is incomplete (interrupted {i['operation']}): `harness apply` "
                "redoes it, `harness rollback` undoes it" for i in incomplete]

    def narrow(text: str) -> str:
        if not done or not failing:
            return text
        return _NOTHING_CHANGED.sub(
            f"Nothing of {failing} was changed (the {len(done)} file(s) this run {verb} "
            f"before it stay {verb}).", text)

    details = [narrow(d) for d in e.details]
    message = narrow(e.message)
    sqlstate = getattr(e, "sqlstate", None)
    stop = f"{direction} stopped at {current or 'no applied version'}"
    if direction == "rollback" and sqlstate == "FM002":
        why = (["the rollback probe found nothing to refuse before the first file ran, so "
                "these rows were written while the rollback ran (by the application, "
                "between two files)"] if probe_passed else [])
        return RollbackRefused(
            f"{stop}: {message}", sqlstate=sqlstate,
            details=details + why + summary
            + ["`harness apply` returns to the newest version; or end or move those rows "
               "(or archive them: --preserve) and run the rollback again"])
    if sqlstate == "FM001" and not isinstance(e, RefusedError):
        return PreflightRefused(f"{stop}: {message}", sqlstate=sqlstate,
                                file=getattr(e, "file", None), details=details + summary)
    if isinstance(e, LockNotGranted):
        e.message = f"{stop}: {message}"
    else:
        e.message = message
    e.details = details + summary
    return e


# ---------------------------------------------------------------------------
# apply

def _apply_dry_run(target_dsn, files, to, result: ApplyResult, lock_timeout,
                   statement_timeout) -> ApplyResult:
    """What apply would adopt and run; read-only, no migration lock."""
    with connect(target_dsn, lock_timeout=lock_timeout,
                 statement_timeout=statement_timeout) as conn:
        st = compute_status(files, read_state(conn), None)
        refuse_if_unsafe(st)
        target, pending = select_pending(files, st, to)
        for f in pending:
            if f.baseline:
                d = adoption_check(conn, f)
                if d:
                    raise AdoptionMismatch(
                        f"refusing to adopt: the live public schema differs from {f.id}",
                        details=d)
                if d == []:
                    result.adopted.append(f.id)
                    continue
            result.planned.append(f.id)
    return result


def _apply_steps(sess: MigrationSession, files, st: dict, to) -> list[Step]:
    """The steps of an apply, after its refusals: adopt a matching production
    baseline, finish an interrupted rollback before applying that file again,
    apply every other pending file."""
    refuse_if_unsafe(st)
    target, pending = select_pending(files, st, to)
    adopt_baseline = False
    if pending and pending[0].baseline:
        d = adoption_check(sess.conn, pending[0])
        if d:
            raise AdoptionMismatch(
                f"refusing to adopt: the live public schema differs from "
                f"{pending[0].id}; nothing was changed", details=d)
        adopt_baseline = d == []
    if target is not None and not pending:
        sess.say(f"{target.id} is already applied; nothing to do")
    incomplete = {i["id"]: i["operation"] for i in st["incomplete"]}
    for mid in sorted(set(incomplete) - {f.id for f in pending}):
        sess.say(f"warning: {mid} is incomplete (interrupted {incomplete[mid]}) and "
                 f"newer than --to: `harness apply` redoes it, `harness rollback "
                 f"--to {target.id if target else '...'}` undoes it")
    steps: list[Step] = []
    for f in pending:
        if f.baseline and adopt_baseline:
            steps.append(Step("adopt", f))
        elif incomplete.get(f.id) == "rollback":
            # its rollback committed some statements: finish it (the rollback of a
            # no-transaction file is rerunnable), then apply the file afresh
            steps += [Step("rollback", f, f"{f.id}: its rollback was interrupted; "
                                          "finishing it, then applying the file again"),
                      Step("apply", f)]
        elif incomplete.get(f.id) == "apply":
            steps.append(Step("apply", f, f"{f.id}: its apply was interrupted; running "
                                          "the file again from the top"))
        else:
            steps.append(Step("apply", f))
    return steps


def apply(target_dsn: str, to: str | None = None, *, dry_run: bool = False,
          preserve: bool = False, sql_root: Path | None = None,
          lock_timeout: str = DEFAULT_LOCK_TIMEOUT, statement_timeout: str = "0",
          progress: Progress | None = None, lock_wait: float = 30.0, err=None,
          lock_retries: int | None = None, retry_max_delay: float | None = None,
          concurrent_lock_timeout: str = DEFAULT_CONCURRENT_LOCK_TIMEOUT) -> ApplyResult:
    """Apply pending migrations (through ``to`` when given). See the module docstring."""
    files = load_chain(sql_root)
    result = ApplyResult(target=redact(target_dsn), dry_run=dry_run)
    policy = LockRetry.from_options(lock_timeout, lock_retries, retry_max_delay,
                                    concurrent_lock_timeout)
    if dry_run:
        return _apply_dry_run(target_dsn, files, to, result, lock_timeout, statement_timeout)
    with _session(target_dsn, policy, statement_timeout, progress, err, lock_wait) as sess:
        steps = _apply_steps(sess, files, compute_status(files, read_state(sess.conn), None),
                             to)
        sess.bookkeeping.ensure()   # creates it, or moves an earlier harness's out of public
        _execute(sess, files, steps, "apply",
                 {"adopt": result.adopted, "apply": result.applied}, preserve=preserve)
    return result


# ---------------------------------------------------------------------------
# rollback

def _rollback_victims(files, state: dict, st: dict, to: str | None,
                      steps: int | None) -> tuple[list[str], dict[str, str]]:
    """(the files a rollback undoes, newest first; the incomplete files), after
    its refusals (unknown versions, an adopted baseline)."""
    by_id = {f.id: f for f in files}
    refuse_prerelease(st)
    if st["unknown"]:
        raise RefusedError("refusing to roll back: the database has migrations this "
                           "tree does not know", details=[u["id"] for u in st["unknown"]])
    # an incomplete no-transaction file (interrupted apply or rollback) holds part
    # of its changes: roll it back like an applied one (its rollback is rerunnable)
    incomplete = {i["id"]: i["operation"] for i in st["incomplete"]}
    done = {a["id"] for a in st["applied"]}
    applied = [f.id for f in files if f.id in done or f.id in incomplete]
    if to is not None:
        target = find(files, to)
        if target.id in incomplete:
            raise UsageError(
                f"{target.id} is incomplete (interrupted {incomplete[target.id]}); it "
                f"cannot stay as the last applied version: `harness apply --to "
                f"{target.id}` redoes it, or roll back to an older version")
        if target.id not in applied:
            raise UsageError(f"{target.id} is not applied; cannot roll back to it")
        victims = [i for i in applied if by_id[i].version > target.version]
    else:
        victims = applied[-steps:] if steps <= len(applied) else list(applied)
        if steps > len(applied):
            raise UsageError(f"only {len(applied)} migrations are applied; "
                             f"cannot roll back {steps}")
    victims.reverse()
    for mid in victims:
        if by_id[mid].baseline and state[mid]["adopted"]:
            raise RollbackRefused(
                f"refusing to roll back {mid}: this database's baseline was adopted "
                "(it is the production schema the pack started from, never dropped); "
                "nothing was rolled back")
    return victims, incomplete


def rollback(target_dsn: str, *, to: str | None = None, steps: int | None = None,
             preserve: bool = False, sql_root: Path | None = None,
             lock_timeout: str = DEFAULT_LOCK_TIMEOUT, statement_timeout: str = "0",
             progress: Progress | None = None, lock_wait: float = 30.0,
             dry_run: bool = False, err=None, lock_retries: int | None = None,
             retry_max_delay: float | None = None,
             concurrent_lock_timeout: str = DEFAULT_CONCURRENT_LOCK_TIMEOUT
             ) -> RollbackResult:
    """Roll back to ``to`` (it stays applied) or the ``steps`` newest migrations."""
    if (to is None) == (steps is None):
        raise UsageError("rollback needs exactly one of --to VERSION or --steps N")
    if steps is not None and steps < 1:
        raise UsageError("--steps must be at least 1")
    files = load_chain(sql_root)
    by_id = {f.id: f for f in files}
    result = RollbackResult(target=redact(target_dsn), dry_run=dry_run)
    policy = LockRetry.from_options(lock_timeout, lock_retries, retry_max_delay,
                                    concurrent_lock_timeout)
    with _session(target_dsn, policy, statement_timeout, progress, err,
                  None if dry_run else lock_wait) as sess:
        state = read_state(sess.conn)
        st = compute_status(files, state, None)
        victims, incomplete = _rollback_victims(files, state, st, to, steps)
        refuse_rollback_drift(st, victims)
        if dry_run:
            result.planned = victims
            return result
        probe_rollback(sess, [by_id[m] for m in victims], preserve=preserve)
        if victims:
            sess.bookkeeping.ensure()   # moves an earlier harness's out of public
        plan_steps = [Step("rollback", by_id[mid], None if mid not in incomplete else
                           f"{mid}: its {incomplete[mid]} was interrupted; "
                           + ("finishing the rollback" if incomplete[mid] == "rollback"
                              else "undoing what it committed with its rollback file"))
                      for mid in victims]
        _execute(sess, files, plan_steps, "rollback", {"rollback": result.rolled_back},
                 preserve=preserve, probe_passed=True)
    return result
