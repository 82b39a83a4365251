"""``harness``: the one command-line layer over the harness modules.

Every command is a click command here; each runs its work through :func:`run`,
the one place where an error becomes one message and an exit code (the
mapping itself is harness.errors.translate; the table is errors.EXIT_CODES).
Library modules never import this one.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from .errors import (COMMAND_EXIT_CODES, EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_SIGINT,
                     EXIT_SIGTERM, EXIT_USAGE, LocalProblem, Terminated, UsageError,
                     signal_name, translate)
from .dsn import DEFAULT_LOCK_TIMEOUT
from .target import repo_root, resolve_target
from .target import sql_root as _sql_root


def _exit_code_lines(codes, meanings: dict[int, str] | None = None, width: int = 72) -> str:
    import textwrap
    text = {**EXIT_CODES, **(meanings or {})}
    out = []
    for code in codes:
        head = f"  {code}  "
        out += textwrap.wrap(text[code], width, initial_indent=head,
                             subsequent_indent=" " * len(head))
    return "\n".join(out)


def exit_epilog(command: str, meanings: dict[int, str] | None = None) -> str:
    """The ``--help`` epilog listing the exit codes ``command`` can return (its
    subset of EXIT_CODES; ``meanings`` words a code the way this command uses it)."""
    return (f"\b\nExit codes of {command}:\n"
            f"{_exit_code_lines(COMMAND_EXIT_CODES[command], meanings)}\n")


TARGETS = """\b
Without --target, commands that connect use $DATABASE_URL; else, when a libpq
variable (PGHOST, PGPORT, PGDATABASE, PGUSER, PGSERVICE, PGPASSFILE,
PGSSLMODE, ...) is set, what libpq makes of them; else the embedded
PostgreSQL 18 kept under ./.harness/ (started on demand, stopped by `harness
stop`). Each prints its target first, on stderr; connect_timeout is 10 s
unless the DSN or PGCONNECT_TIMEOUT sets one.
"""

EPILOG = f"""\b
Exit codes (each command's --help lists the ones it can return):
{_exit_code_lines(EXIT_CODES)}

{TARGETS}"""

TARGET_HELP = ("libpq DSN/URI of the target database (default: $DATABASE_URL, the PG* "
               "variables, else the embedded server)")


def run(fn):
    """Run ``fn``; every known error becomes one clear message and its exit code;
    SIGINT / SIGTERM (a KeyboardInterrupt that apply and rollback did not already
    turn into their stop report) exits 130 / 143."""
    try:
        return fn()
    except KeyboardInterrupt as e:
        name = signal_name(e)
        click.echo(f"harness: interrupted by {name}", err=True)
        sys.exit(EXIT_SIGTERM if name == "SIGTERM" else EXIT_SIGINT)
    except Exception as e:
        known = translate(e)
        if known is None:
            raise
        message, code = known
        click.echo(f"harness: {message}", err=True)
        sys.exit(code)


def _print_version(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version
    try:
        pack = version("forgea-schema-pack")
    except PackageNotFoundError:
        pack = "(not installed)"
    try:
        from .chain import load_chain
        root = _sql_root()
        head = f"chain head {load_chain(root)[-1].id} ({root})"
    except Exception as e:   # a broken chain must not hide the pack's version
        head = f"chain head unknown ({str(e).splitlines()[0]})"
    click.echo(f"harness (forgea-schema-pack) {pack}; {head}")
    ctx.exit(EXIT_OK)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="print the pack's version and the chain's head version, and exit")
def cli():
    """Forgea schema pack: apply, roll back, inspect and lint the migrations."""


def lock_options(fn):
    """The session and lock-retry options shared by apply and rollback."""
    from .dsn import DEFAULT_LOCK_TIMEOUT
    from .lock_retry import DEFAULT_CONCURRENT_LOCK_TIMEOUT, MAX_LOCK_RETRIES, RETRY_MAX_DELAY
    for opt in reversed([
        click.option("--lock-timeout", default=DEFAULT_LOCK_TIMEOUT, show_default=True,
                     help="lock_timeout of each attempt: the longest a statement waits "
                          "for a lock, and so the longest the application queues behind "
                          "the migration's lock request"),
        click.option("--lock-retries", default=MAX_LOCK_RETRIES, show_default=True,
                     type=click.IntRange(min=0),
                     help="retries of a step that hit lock_timeout (rolled back, then "
                          "retried after an exponential, jittered backoff); then stop "
                          "(exit 3) naming the sessions in the way"),
        click.option("--lock-retry-max-delay", default=RETRY_MAX_DELAY, show_default=True,
                     type=click.FloatRange(min=0.001),
                     help="cap in seconds of the backoff between retries (it starts at "
                          "0.1s and doubles; half of each delay is random)"),
        click.option("--concurrent-lock-timeout", default=DEFAULT_CONCURRENT_LOCK_TIMEOUT,
                     show_default=True,
                     help="lock_timeout of CREATE/DROP INDEX CONCURRENTLY, which wait for "
                          "running transactions but block no application statement"),
        click.option("--statement-timeout", default="0", show_default=True,
                     help="statement_timeout of the migration statements (0 = none)"),
        click.option("--lock-wait", default=30.0, show_default=True, type=float,
                     help="seconds to wait for another run's migration lock"),
    ]):
        fn = opt(fn)
    return fn


@cli.command(epilog=exit_epilog("apply") + "\n" + TARGETS)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--to", "to", metavar="VERSION", help="apply up to and including VERSION")
@click.option("--dry-run", is_flag=True, help="show what would run; change nothing")
@click.option("--preserve", is_flag=True,
              help="run with forgea.rollback_preserve = on")
@lock_options
def apply(target, to, dry_run, preserve, lock_timeout, lock_retries, lock_retry_max_delay,
          concurrent_lock_timeout, statement_timeout, lock_wait):
    """Apply pending migrations (adopting a matching production baseline).

    Each file commits with its bookkeeping; locks are taken with a short
    lock_timeout and retried (see the lock options), so a long-running reader
    stalls the application for at most --lock-timeout per attempt.
    """
    from . import apply as A

    def go():
        dsn = resolve_target(target)
        r = A.apply(dsn, to, dry_run=dry_run, preserve=preserve,
                    lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                    lock_wait=lock_wait, sql_root=_sql_root(), lock_retries=lock_retries,
                    retry_max_delay=lock_retry_max_delay,
                    concurrent_lock_timeout=concurrent_lock_timeout)
        if dry_run:
            click.echo(f"dry run against {r.target}; nothing was changed")
            for mid in r.adopted:
                click.echo(f"  would adopt {mid} (live schema matches the baseline)")
            for mid in r.planned:
                click.echo(f"  would apply {mid}")
            if not (r.adopted or r.planned):
                click.echo("  nothing to apply")
        else:
            n = len(r.applied) + len(r.adopted)
            click.echo(f"{r.target}: {n} migration(s) applied"
                       + (f", {len(r.adopted)} adopted" if r.adopted else ""))
    run(go)


@cli.command(epilog=exit_epilog("rollback") + "\n" + TARGETS)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--to", "to", metavar="VERSION",
              help="roll back everything newer than VERSION (VERSION stays applied)")
@click.option("--steps", type=int, metavar="N", help="roll back the N newest migrations")
@click.option("--preserve", is_flag=True,
              help="archive rows the old schema cannot hold (forgea.rollback_preserve = on)")
@click.option("--dry-run", is_flag=True, help="show what would be rolled back")
@click.option("--sql", "as_sql", is_flag=True,
              help="print the psql script that does this rollback, as safely (checked at "
                   "run time, bookkeeping kept true); change nothing")
@lock_options
def rollback(target, to, steps, preserve, dry_run, as_sql, lock_timeout, lock_retries,
             lock_retry_max_delay, concurrent_lock_timeout, statement_timeout, lock_wait):
    """Roll back migrations: --to VERSION or --steps N.

    Refuses (exit 3) while any applied file or the rollback file of any file it
    would roll back was edited since apply. Probes the whole rollback in one
    transaction first; if the application then writes rows an older schema
    cannot hold, the run stops at a recorded version (exit 3) and names it.
    """
    from . import apply as A
    if (to is None) == (steps is None):
        click.echo("harness: rollback needs exactly one of --to VERSION or --steps N",
                   err=True)
        sys.exit(EXIT_USAGE)

    def go():
        dsn = resolve_target(target)
        if as_sql:
            from . import rollback_sql as R
            from .dsn import session_options
            session_options(lock_timeout, statement_timeout)   # validates both (exit 2)
            plan = R.rollback_plan(dsn, to=to, steps=steps, sql_root=_sql_root())
            click.echo(R.rollback_sql(plan, preserve=preserve,
                                      lock_timeout=lock_timeout.replace(" ", ""),
                                      statement_timeout=statement_timeout.replace(" ", ""),
                                      concurrent_lock_timeout=concurrent_lock_timeout),
                       nl=False)
            return
        r = A.rollback(dsn, to=to, steps=steps, preserve=preserve, dry_run=dry_run,
                       lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                       lock_wait=lock_wait, sql_root=_sql_root(), lock_retries=lock_retries,
                       retry_max_delay=lock_retry_max_delay,
                       concurrent_lock_timeout=concurrent_lock_timeout)
        if dry_run:
            click.echo(f"dry run against {r.target}; would roll back: "
                       + (", ".join(r.planned) or "nothing"))
        else:
            click.echo(f"{r.target}: {len(r.rolled_back)} migration(s) rolled back")
    run(go)


STATUS_EPILOG = """\b
What status reports (text and --json alike):
  applied           files recorded as applied, oldest first (adopted: the
                    baseline recorded without running it)
  pending           files not applied yet, in the order apply runs them
  incomplete        no-transaction files interrupted half-way (part of their
                    statements committed): `harness apply` redoes them,
                    `harness rollback` undoes them
  drift             applied files edited since they were applied: apply and
                    rollback refuse (exit 3) until they are restored
  rollback_changed  rollback files edited since their file was applied:
                    rollback refuses to run them (exit 3)
  unknown           versions recorded in the database that this tree does
                    not have (a checkout older than the database): apply and
                    rollback refuse
  out_of_order      pending files older than the newest applied one (they
                    would run out of order): apply refuses
Each applied file also says who applied it (applied_by: the role that ran
it) and when (applied_at).

""" + exit_epilog("status", {
    0: "nothing above needs attention (pending files are normal)",
    1: "drift, rollback_changed, unknown, out_of_order or incomplete found"}) + "\n" + TARGETS


def _print_status(st: dict) -> None:
    click.echo(f"target: {st['target']}")
    click.echo(f"  (psql \"{st['target']}\")")
    click.echo(f"server_version_num: {st['server_version']}")
    click.echo(f"applied ({len(st['applied'])}), oldest first:")
    for a in st["applied"]:
        flag = "  [adopted: recorded, not run]" if a["adopted"] else ""
        by = f" by {a['applied_by']}" if a.get("applied_by") else ""
        click.echo(f"  {a['id']}  {a['applied_at']}{by}{flag}")
    click.echo(f"pending ({len(st['pending'])}), in the order apply runs them:")
    for p in st["pending"]:
        click.echo(f"  {p['id']}" + ("  [no-transaction]" if p["no_transaction"] else "")
                   + (f"  [INCOMPLETE: interrupted {p['incomplete']}]"
                      if p.get("incomplete") else ""))
    if st["incomplete"]:
        click.echo(f"INCOMPLETE ({len(st['incomplete'])}): no-transaction files "
                   "interrupted half-way (part of their statements committed); "
                   "`harness apply` redoes them, `harness rollback` undoes them:")
        for i in st["incomplete"]:
            click.echo(f"  {i['id']}  interrupted {i['operation']} since {i['since']}")
    if st["drift"]:
        click.echo(f"DRIFT ({len(st['drift'])}): applied files edited since apply; apply "
                   "and rollback refuse until they are restored:")
        for d in st["drift"]:
            click.echo(f"  {d['file']}")
    if st["rollback_changed"]:
        click.echo(f"ROLLBACK FILES CHANGED ({len(st['rollback_changed'])}) since their "
                   "file was applied; rollback refuses to run them:")
        for r in st["rollback_changed"]:
            click.echo(f"  {r['file']}")
    if st["unknown"]:
        click.echo(f"UNKNOWN ({len(st['unknown'])}): applied in the database but not in "
                   "this tree (is the checkout older than the database?); apply and "
                   "rollback refuse:")
        for u in st["unknown"]:
            click.echo(f"  {u['id']}  applied {u['applied_at']}")
    if st["out_of_order"]:
        click.echo(f"OUT OF ORDER ({len(st['out_of_order'])}): pending files older than "
                   "the newest applied one; apply refuses to run them out of order:")
        for mid in st["out_of_order"]:
            click.echo(f"  {mid}")
    click.echo(f"bookkeeping schema: {st.get('bookkeeping_schema') or 'none yet'}")


@cli.command(epilog=STATUS_EPILOG)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
def status(target, as_json):
    """Applied, pending, incomplete, drifted, unknown and out-of-order migrations."""
    from . import apply as A

    def go():
        dsn = resolve_target(target)
        st = A.status(dsn, sql_root=_sql_root())
        if as_json:
            click.echo(json.dumps(st, indent=2, default=str))
        else:
            _print_status(st)
        if (st["drift"] or st["unknown"] or st["incomplete"] or st["out_of_order"]
                or st["rollback_changed"]):
            sys.exit(EXIT_FAILED)
    run(go)


PREFLIGHT_EPILOG = exit_epilog("preflight", {
    0: "every pre-condition that could be evaluated holds (deferred and unchecked "
       "ones are listed; warnings never fail)",
    3: "a pre-condition of a pending file does not hold: its rows are listed",
}) + "\n" + TARGETS


def _limit_option(fn):
    return click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0),
                        help="rows shown per failed pre-condition (the total is always "
                             "given)")(fn)


@cli.command(epilog=PREFLIGHT_EPILOG)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--to", "to", metavar="VERSION", help="check the files up to and including VERSION")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@_limit_option
def preflight(target, to, as_json, limit):
    """Every data pre-condition of every pending file, read-only (sql/preflight/).

    \b
    One READ ONLY transaction, rolled back; any role that can read the
    tables will do (forgea_readonly, plus SELECT on the harness bookkeeping).
    plan, apply --dry-run and apply run it first.
    """
    from . import apply as A
    from . import preflight as PF
    from .errors import EXIT_REFUSED

    def go():
        r = A.preflight(resolve_target(target), sql_root=_sql_root(), to=to, limit=limit)
        if as_json:
            click.echo(json.dumps(r.as_dict(), indent=2, default=str))
        else:
            click.echo(f"pre-flight of {len(r.pending)} pending file(s) against {r.target}")
            for line in PF.render(r):
                click.echo(line)
            click.echo("pre-flight: " + ("ok" if r.ok else
                                         f"{len(r.failures)} pre-condition(s) do not hold"))
        sys.exit(EXIT_OK if r.ok else EXIT_REFUSED)
    run(go)


@cli.command(epilog=exit_epilog("plan") + "\n" + TARGETS)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--to", "to", metavar="VERSION", help="plan up to and including VERSION")
@click.option("--sql", "as_sql", is_flag=True,
              help="print the psql script that does what apply would do, as safely: "
                   "checked at run time against the state it was generated for")
@click.option("--lock-timeout", default=DEFAULT_LOCK_TIMEOUT, show_default=True,
              help="--sql: lock_timeout of each transaction of the script")
@click.option("--statement-timeout", default="0", show_default=True,
              help="--sql: statement_timeout of the migration statements (0 = none)")
@click.option("--json", "as_json", is_flag=True,
              help="print the plan as JSON: the pending files in order, each with id, "
                   "action (apply / adopt), no_transaction and its header directives")
@_limit_option
def plan(target, to, as_sql, lock_timeout, statement_timeout, as_json, limit):
    """Pending migrations and their pre-flight; with --sql the script a DBA can
    review or run with psql. Exits 3 when a pre-condition does not hold.

    \b
    Checks, like apply, that the role owns the baseline's tables or can SET ROLE
    to their owner (exit 3 otherwise); the script sets that role. See
    docs/dba.md, "Apply by hand".
    """
    from . import apply as A
    from . import preflight as PF
    from .dsn import session_options

    def go():
        session_options(lock_timeout, statement_timeout)     # validates both (exit 2)
        dsn = resolve_target(target)
        p = A.plan(dsn, sql_root=_sql_root(), to=to, limit=limit)
        if as_sql:
            PF.refuse(p["preflight"], what="apply would be")   # no script for a refused run
            click.echo(A.plan_sql(p, lock_timeout=lock_timeout.replace(" ", ""),
                                  statement_timeout=statement_timeout.replace(" ", "")),
                       nl=False)
            return
        if as_json:
            click.echo(json.dumps(A.plan_document(p), indent=2))
            PF.refuse(p["preflight"], what="apply would be")
            return
        click.echo(f"target: {p['target']}")
        if not p["pending"]:
            click.echo("nothing pending")
        for f in p["pending"]:
            what = "adopt" if (f.baseline and p["adopt_baseline"]) else "apply"
            extra = " [no-transaction]" if f.no_transaction else ""
            click.echo(f"  {what} {f.id}  ({f.relpath()}){extra}")
        if p["failed_door"]:
            click.echo(PF.door_note(p["failed_door"]))
        PF.refuse(p["preflight"], what="apply would be")
    run(go)


REPAIR_EPILOG = exit_epilog("repair", {
    0: "check-adoption: the adoption record is true (or there is none), or --fix "
       "removed a false one; mark-applied / mark-pending: recorded",
    1: "check-adoption: the adoption record is false (the differences are listed)",
    3: "refused, nothing changed: the live catalog is not what the chain up to that "
       "version creates (the differences are listed), files out of order, newer files "
       "recorded, another run holds the migration lock",
    5: "could not check: the throwaway server that builds what the files create could "
       "not be started (nothing changed)",
}) + """\b
Every change is logged in harness._harness_repair_log (current_user,
session_user, when, what, --reason, the evidence). docs/dba.md, "Repair".
""" + "\n" + TARGETS


@cli.group(epilog=REPAIR_EPILOG)
def repair():
    """Change the bookkeeping explicitly, after proving it against the live catalog."""


def _repair_out(r, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"target": r.target, "action": r.action, "id": r.migration_id,
                               "ok": r.ok, "changed": r.changed, "message": r.message,
                               "differences": r.differences}, indent=2))
    else:
        click.echo(f"target: {r.target}")
        click.echo(r.message)
        for d in r.differences:
            click.echo("  " + d.replace("\n", "\n  "))
    if not r.ok and not r.changed:
        sys.exit(EXIT_FAILED)


@repair.command("check-adoption", epilog=REPAIR_EPILOG)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--fix", is_flag=True, help="remove the adoption record when it is false "
              "(refused while newer files are recorded on top of it)")
@click.option("--reason", metavar="TEXT", help="why (required with --fix; logged)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.option("--lock-wait", default=30.0, show_default=True, type=float,
              help="seconds to wait for another run's migration lock")
def repair_check_adoption(target, fix, reason, as_json, lock_wait):
    """Re-check the baseline's adoption record against the live catalog."""
    from . import repair as R

    def go():
        _repair_out(R.check_adoption(resolve_target(target), fix=fix, reason=reason,
                                     sql_root=_sql_root(), lock_wait=lock_wait), as_json)
    run(go)


def _mark(which):
    @click.argument("version")
    @click.option("--target", metavar="DSN", help=TARGET_HELP)
    @click.option("--reason", metavar="TEXT", required=True,
                  help="why the bookkeeping is changed (logged)")
    @click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
    @click.option("--lock-wait", default=30.0, show_default=True, type=float,
                  help="seconds to wait for another run's migration lock")
    def cmd(version, target, reason, as_json, lock_wait):
        from . import repair as R
        fn = R.mark_applied if which == "applied" else R.mark_pending

        def go():
            _repair_out(fn(resolve_target(target), version, reason=reason,
                           sql_root=_sql_root(), lock_wait=lock_wait), as_json)
        run(go)
    return cmd


repair.command("mark-applied", epilog=REPAIR_EPILOG,
               help="Record VERSION as applied after a DBA ran it by hand: only when every "
                    "older file is recorded and the live catalog and grants are what the "
                    "chain up to VERSION creates.")(_mark("applied"))
repair.command("mark-pending", epilog=REPAIR_EPILOG,
               help="Remove VERSION's records after a DBA rolled it back by hand: only when "
                    "it is the newest recorded file and the live catalog and grants are what "
                    "the chain before it creates.")(_mark("pending"))


@cli.command(epilog=exit_epilog("lint"))
@click.option("--json", "as_json", is_flag=True, help="print findings as JSON")
def lint(as_json):
    """sqlfluff + squawk + the pack's own rules over every SQL file."""
    from . import lint as L

    def go():
        findings = L.run_lint(repo_root())
        if as_json:
            click.echo(json.dumps({"ok": not findings,
                                   "findings": [f.as_dict() for f in findings]}, indent=2))
        else:
            for f in findings:
                click.echo(str(f))
            click.echo(f"{len(findings)} finding(s)", err=True)
        sys.exit(EXIT_FAILED if findings else EXIT_OK)
    run(go)


@cli.command(epilog=exit_epilog("checkpoint") + "\n" + TARGETS)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--out", "out", metavar="FILE", type=click.Path(dir_okay=False),
              help="write the checkpoint document here (default: standard output)")
@click.option("--previous", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="an earlier checkpoint the live ledger must extend; named in the new one")
@click.option("--no-record", is_flag=True,
              help="do not record the checkpoint in LedgerCheckpoint (a read-only role)")
@click.option("--compare", nargs=2, metavar="EARLIER LATER",
              type=click.Path(exists=True, dir_okay=False),
              help="check offline that checkpoint LATER extends EARLIER; no database")
def checkpoint(target, out, previous, no_record, compare):
    """Commit to the whole push ledger: every session's head, one Merkle root.

    \b
    Keep the document off the database (another system, object storage with
    retention, a git repository); `harness verify --checkpoint FILE` later
    fails when any row that existed at checkpoint time was removed, reordered
    or rewritten, even by a superuser who also rewrote AuditLog.
    """
    from . import ledger

    def go():
        if compare:
            earlier, later = (ledger.load(f) for f in compare)
            problems = ledger.compare(earlier, later)
            for line in problems:
                click.echo(f"  {line}")
            click.echo(f"{later['root']} extends {earlier['root']}" if not problems
                       else f"{later['root']} does NOT extend {earlier['root']}")
            sys.exit(EXIT_FAILED if problems else EXIT_OK)
        prev = ledger.load(previous) if previous else None
        import psycopg
        with psycopg.connect(resolve_target(target), autocommit=True,
                             application_name="harness-checkpoint") as conn:
            doc = ledger.take_checkpoint(conn, prev)
            if not no_record:
                ledger.record(conn, doc)
        text = json.dumps(doc, indent=1) + "\n"
        if out:
            Path(out).write_text(text, encoding="utf-8")
        else:
            click.echo(text, nl=False)
        click.echo(f"root {doc['root']}: {doc['sessionCount']} sessions, {doc['rows']} rows"
                   + (f", extends {doc['previousRoot']}" if doc["previousRoot"] else ""),
                   err=True)
    run(go)


@cli.command(epilog=exit_epilog("schema", {
    5: "the throwaway server the chain is built on could not be started"}))
@click.option("--out", metavar="FILE", type=click.Path(dir_okay=False),
              help="where to write it (default: sql/schema.sql)")
@click.option("--check", is_flag=True,
              help="write nothing; exit 1 when the file differs from what the chain builds")
@click.option("--pg-version", type=int, default=18, show_default=True,
              help="major of the throwaway server the chain is built on")
def schema(out, check, pg_version):
    """Generate sql/schema.sql: the schema after the whole chain, in one file."""
    from . import schema_file, servers

    def go():
        path = Path(out) if out else _sql_root() / "schema.sql"
        try:
            cluster = servers.start_throwaway(pg_version)
        except Exception as e:
            raise LocalProblem(f"could not start PostgreSQL {pg_version}: {e}")
        try:
            text = schema_file.generate(cluster.dsn(), _sql_root())
        finally:
            cluster.destroy()
        if check:
            same = path.exists() and path.read_text(encoding="utf-8") == text
            click.echo(f"{path}: " + ("up to date" if same else
                                      "differs from the chain; run `harness schema`"))
            sys.exit(EXIT_OK if same else EXIT_FAILED)
        path.write_text(text, encoding="utf-8")
        click.echo(f"{path}: {len(text.splitlines())} lines")
    run(go)


@cli.command(epilog=exit_epilog("stop", {
    5: "the embedded server could not be stopped"}))
def stop():
    """Stop the embedded PostgreSQL server."""
    def go():
        from . import servers
        try:
            was = servers.stop_embedded(repo_root())
        except Exception as e:
            raise LocalProblem(f"could not stop the embedded server: {e}")
        click.echo("embedded server stopped" if was else "embedded server was not running")
    run(go)


VERIFY_EPILOG = exit_epilog("verify", {
    0: "no check failed (info findings are allowed; a check this role may not run is "
       "listed as \"could not run\", not failed)",
    1: "a check failed",
    2: "usage error (a bad option, a malformed DSN, a --checkpoint file that does not "
       "exist), or the checkpoint or --worker-keys file cannot be used (the field is named)",
    5: "could not check: a problem on this machine (no server binaries or scratch "
       "server for the reference, an unusable cache), not in the database"}) + "\n" + TARGETS


@cli.command(epilog=VERIFY_EPILOG)
@click.option("--target", metavar="DSN", help=TARGET_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--sql-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="sql/ tree to compare with (default: $HARNESS_SQL_ROOT or the repo's)")
@click.option("--checkpoint", metavar="FILE", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="also check that the live ledger still extends this checkpoint "
                   "(written earlier by `harness checkpoint`)")
@click.option("--no-reference", is_flag=True,
              help="skip comparing every definition with what the applied files create "
                   "(built on a throwaway server of the same major)")
@click.option("--require-complete/--no-require-complete", default=True, show_default=True,
              help="pending migrations are a failure, or only reported")
@click.option("--worker-keys", metavar="FILE", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON {key id: Ed25519 public key (hex or base64)}: every pass must "
                   "carry a valid worker attestation by one of them (docs/security.md)")
def verify(target, as_json, sql_root, checkpoint, no_reference, require_complete,
           worker_keys):
    """Read-only checks of a live database, each named in the output.

    \b
    One READ ONLY transaction, never committed; each check in its own
    savepoint, so one that errors fails alone. The checks and what each
    proves: docs/dba.md, "What verify checks".
    """
    from . import ledger
    from . import verify as V

    def go():
        doc = ledger.load(checkpoint) if checkpoint else None   # refused: exit 2
        keys = _worker_keys(worker_keys) if worker_keys else None   # refused: exit 2
        sys.exit(V.run(resolve_target(target), as_json, sql_root=sql_root or _sql_root(),
                       require_complete=require_complete, checkpoint=doc,
                       reference_snapshot=None if no_reference else "build",
                       worker_keys=keys))
    run(go)


def _worker_keys(path):
    from . import attest
    try:
        return attest.load_worker_keys(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--worker-keys {path}: {e}") from None


ATTEST_EPILOG = exit_epilog("attest", {
    2: "usage error: a bad option, or a key or input file that cannot be used "
       "(the field is named)"})


@cli.group(epilog=ATTEST_EPILOG)
def attest():
    """Reference worker attestations: keys, signing, checking (docs/security.md)."""


@attest.command("keygen", epilog=ATTEST_EPILOG)
@click.option("--key-id", required=True, help="the id workers pass as p_attestation_key_id")
@click.option("--private-out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="write the private key (64 hex digits) here, mode 0600; never overwritten")
def attest_keygen(key_id, private_out):
    """A new Ed25519 worker key; prints its --worker-keys entry as JSON."""
    from . import attest as A

    def go():
        if not A.KEY_ID_RE.fullmatch(key_id):
            raise UsageError(f"--key-id {key_id!r}: must be 1-128 of [A-Za-z0-9._:-]")
        key, pub = A.generate()
        try:
            fd = os.open(private_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise UsageError(f"--private-out {private_out}: {e.strerror or e}") from None
        with os.fdopen(fd, "w") as f:
            f.write(A.private_hex(key) + "\n")
        click.echo(json.dumps({key_id: pub}))
    run(go)


@attest.command("sign", epilog=ATTEST_EPILOG)
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the private key file (hex or base64 of 32 bytes)")
@click.option("--key-id", required=True)
@click.option("--job", "job_file", required=True, type=click.File("r"),
              help="JSON of the claimed job (id, sessionId, commitSha, labVersionId); - = stdin")
@click.option("--result", required=True, type=click.Choice(["PASSED", "FAILED", "ERROR"]))
@click.option("--logs", "logs_file", type=click.File("r"), default=None,
              help="JSON object passed as p_logs (default {})")
@click.option("--completed-at", default=None,
              help="ISO 8601 UTC time at millisecond precision (default: now)")
def attest_sign(key_file, key_id, job_file, result, logs_file, completed_at):
    """Sign a completion; prints signature (hex), completedAt and the statement."""
    import datetime as dt

    from . import attest as A

    def go():
        try:
            key = A.load_private(key_file.read_text().strip())
            job = json.loads(job_file.read())
            logs = A.parse_logs(logs_file.read()) if logs_file else {}
            when = (dt.datetime.fromisoformat(completed_at.replace("Z", "+00:00"))
                    if completed_at else A.now_ms())
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            sig = A.sign(key, job, result=result, logs=logs, completed_at=when,
                         key_id=key_id)
            message = A.statement(job, result=result, logs_sha256=A.logs_digest(logs),
                                  completed_at=when, key_id=key_id)
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise UsageError(f"attest sign: {type(e).__name__}: {e}") from None
        click.echo(json.dumps({"keyId": key_id, "signature": sig.hex(),
                               "completedAt": A.timestamp_text(when),
                               "statement": message.decode("utf-8")}, indent=2))
    run(go)


BENCH_EPILOG = exit_epilog("bench", {
    0: "every phase ran and every figure was measured",
    1: "a phase failed or a figure is missing"})


def _bench_versions() -> list[str]:
    from .servers import SUPPORTED_VERSIONS
    return [str(v) for v in SUPPORTED_VERSIONS]


@cli.command(epilog=BENCH_EPILOG)
@click.option("--target", metavar="DSN",
              help="server to use (two new databases are created there; needs CREATEDB); "
                   "default: a throwaway cluster of --pg-version")
@click.option("--pg-version", type=click.Choice(_bench_versions()), metavar="N",
              help="major of the throwaway cluster: 18 (default), 17, 16 or 15; "
                   "not with --target")
@click.option("--scale", type=click.IntRange(min=100), default=1_000_000, show_default=True,
              help="LabSession and VerificationLog rows (AuditLog: 10x); at least 100")
@click.option("--json", "as_json", is_flag=True, help="print one flat JSON object of numbers")
@click.option("--report", metavar="FILE",
              help="also write full details as JSON to FILE, and two pictures beside it "
                   "(FILE-latency.png, FILE-concerns.png; needs matplotlib)")
@click.option("--keep", is_flag=True, help="keep the bench databases (--target)")
def bench(target, pg_version, scale, as_json, report, keep):
    """Benchmarks at production scale: against a copy floor, plain INSERTs and procrastinate."""
    if target and pg_version is not None:
        raise click.UsageError("--pg-version picks the throwaway server; it cannot be "
                               "combined with --target")
    from . import bench as B

    def go():
        if target:   # only --target: without it bench builds its own throwaway cluster
            from .target import resolve
            resolve(target).announce()
        sys.exit(B.run(target, scale, as_json, report=report, keep=keep,
                       version=int(pg_version or 18)))
    run(go)


BENCH_PLOT_EPILOG = exit_epilog("bench-plot", {
    0: "both pictures were drawn",
    1: "a picture could not be drawn (the report lacks its data: said on stderr)",
    2: "the report cannot be read or is no JSON object",
    5: "matplotlib is not installed (the bench extra)"})


@cli.command("bench-plot", epilog=BENCH_PLOT_EPILOG)
@click.argument("report", metavar="REPORT.json")
def bench_plot(report):
    """Redraw the pictures of a saved bench report beside it (REPORT-latency.png,
    REPORT-concerns.png): the application's latency during the chain and the naive
    change, and the seconds per concern of both."""
    from . import bench as B
    run(lambda: sys.exit(B.plot_report(report)))


def _on_sigterm(_signum, _frame):
    raise Terminated()


def main(argv=None) -> int:
    # SIGTERM raises like Ctrl-C (psycopg cancels the running statement), so that
    # apply and rollback stop with the same account of where the database is
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, prog_name="harness", standalone_mode=False)
    except click.exceptions.NoSuchOption as e:
        e.show()
        return EXIT_USAGE
    except click.UsageError as e:
        e.show()
        return EXIT_USAGE
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt):
            name = signal_name(e.__cause__)
            click.echo(f"harness: interrupted by {name}", err=True)
            return EXIT_SIGTERM if name == "SIGTERM" else EXIT_SIGINT
        click.echo("aborted", err=True)
        return EXIT_FAILED
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
