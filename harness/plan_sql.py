"""``harness plan`` and ``plan --sql``: what apply would do, read-only, and the one
psql script (``psql -f plan.sql``) that does it by hand, as safely as apply.

The script (:func:`plan_sql`, its parts shared with ``rollback --sql``):

* ``\\set ON_ERROR_STOP on``; the harness's ``lock_timeout`` per transaction
  (default 100ms: the application queues behind a lock request at most that
  long) and ``statement_timeout``;
* ``SET ROLE`` to the owner of the baseline's tables when they exist;
* then, before anything changes, a DO block that takes the migration lock and
  checks at run time that the database is in the state the script was generated
  for (catalog fingerprint and bookkeeping, :mod:`harness.script_check`);
* each transactional file in ``BEGIN; ... COMMIT;`` together with its
  bookkeeping; a no-transaction file recorded as 'applying' first, its
  statements run one by one in autocommit, then recorded as applied (an
  interrupted rollback is finished first), as :mod:`harness.runner` does;
* every block guarded by what is recorded (psql ``\\gset`` / ``\\if``), so that
  a run that stopped (a lock timeout: psql cannot retry) is resumed by running
  the same script again;
* the adoption of the baseline is recorded only after a DO block proved, in the
  same transaction, that the live catalog is the one the generator found equal to
  the baseline's.
"""

from __future__ import annotations

from pathlib import Path

from yoyo.migrations import get_migration_hash

from . import script_check
from .adoption import adoption_check, baseline_owner, check_owner
from .bookkeeping import (BOOKKEEPING_SCHEMA, BOOKKEEPING_SQL, HARNESS_TABLE, LEGACY_SCHEMA,
                          MIGRATION_TABLE, bk, bookkeeping_tables, read_state)
from .chain import MigrationFile, load_chain
from .chain_state import compute_status, refuse_if_unsafe, select_pending
from .dsn import connect, redact
from .errors import AdoptionMismatch
from .runner import created_indexes, is_concurrent, split_statements


def plan(target_dsn: str, sql_root: Path | None = None, to: str | None = None,
         err=None) -> dict:
    """Pending migrations (read-only), with the adoption decision, the owner to act
    as and the state (fingerprint, bookkeeping) a script must find at run time."""
    import sys
    files = load_chain(sql_root)
    with connect(target_dsn) as conn:
        baseline = files[0] if files and files[0].baseline else None
        table_owner = baseline_owner(conn, baseline)[0] if baseline else None
        check_owner(conn, baseline, lambda m: print(m, file=err or sys.stderr))
        fingerprint, sim = script_check.read(conn)
        st = compute_status(files, read_state(conn), None)
        refuse_if_unsafe(st)
        target, pending = select_pending(files, st, to)
        adopt = False
        if pending and pending[0].baseline:
            d = adoption_check(conn, pending[0])
            if d:
                raise AdoptionMismatch(
                    f"refusing to adopt: the live public schema differs from {pending[0].id}",
                    details=d)
            adopt = d == []
        found = bookkeeping_tables(conn)
        schema_exists = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL",
                                     (BOOKKEEPING_SCHEMA,)).fetchone()[0]
    return {"target": redact(target_dsn), "pending": pending, "adopt_baseline": adopt,
            "owner": table_owner, "fingerprint": fingerprint, "state": sim,
            "incomplete": {i["id"]: i["operation"] for i in st["incomplete"]},
            "bookkeeping_exists": bool(found),
            "bookkeeping_schema_exists": schema_exists,
            "legacy_bookkeeping": found.get(LEGACY_SCHEMA, [])}


def plan_document(p: dict) -> dict:
    """``plan --json``: :func:`plan` as data (the pending files in the order apply runs
    them, each with what apply does with it and its header directives)."""
    return {
        "target": p["target"],
        "pending": [{
            "id": f.id, "file": f.relpath(),
            "action": "adopt" if (f.baseline and p["adopt_baseline"]) else "apply",
            "no_transaction": f.no_transaction,
            "incomplete": p["incomplete"].get(f.id),
            "directives": [{"name": d.name, "args": d.args} for d in f.directives],
        } for f in p["pending"]],
    }


def _lit(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    return "'" + str(v).replace("'", "''") + "'"


def _guard(cond_sql: str, body: list[str], skipped: str | None = None) -> list[str]:
    """psql lines running ``body`` only when ``cond_sql`` (a boolean SELECT
    expression) is true at run time."""
    out = [f"SELECT {cond_sql} AS harness_todo \\gset", "\\if :harness_todo", *body]
    if skipped:
        out += ["\\else", f"\\echo {skipped}"]
    return out + ["\\endif"]


def _recorded(f: MigrationFile, state: str = "applied") -> str:
    return (f"EXISTS (SELECT 1 FROM {bk(HARNESS_TABLE)} WHERE migration_id = {_lit(f.id)} "
            f"AND state = {_lit(state)})")


def bookkeeping_setup_sql(p: dict) -> str:
    """The bookkeeping part of a plan script: create the schema when missing, move
    an earlier harness's tables out of public, create what is missing. Each step
    is guarded, so that a re-run of the script passes over it."""
    out = []
    if not p.get("bookkeeping_schema_exists"):
        out += _guard(f"to_regnamespace({_lit(BOOKKEEPING_SCHEMA)}) IS NULL",
                      [f"CREATE SCHEMA {BOOKKEEPING_SCHEMA};"])
    if p.get("legacy_bookkeeping"):
        out.append(f"-- this database's bookkeeping is in {LEGACY_SCHEMA} (an earlier harness): "
                   "move it, rows and all")
        for t in p["legacy_bookkeeping"]:
            out += _guard(f"to_regclass({_lit(f'{LEGACY_SCHEMA}.{chr(34)}{t}{chr(34)}')}) "
                          "IS NOT NULL",
                          [f'ALTER TABLE {LEGACY_SCHEMA}."{t}" SET SCHEMA {BOOKKEEPING_SCHEMA};'])
    return "\n".join(out + ["BEGIN;", "SET LOCAL client_min_messages = warning;",
                              BOOKKEEPING_SQL.rstrip(), "COMMIT;"])


def bookkeeping_sql(f: MigrationFile, *, adopted: bool = False) -> str:
    """Record ``f`` as applied (yoyo's mark and log row, our row), as
    :meth:`harness.bookkeeping.Bookkeeping.record` does."""
    h = get_migration_hash(f.id)
    op = "mark" if adopted else "apply"
    return (
        f"INSERT INTO {bk(MIGRATION_TABLE)} (migration_hash, migration_id, applied_at_utc)\n"
        f"VALUES ({_lit(h)}, {_lit(f.id)}, now() AT TIME ZONE 'utc') "
        "ON CONFLICT (migration_hash) DO NOTHING;\n"
        f'INSERT INTO {bk("_yoyo_log")} (id, migration_hash, migration_id, operation, '
        "username, hostname, created_at_utc)\n"
        f"VALUES (md5(random()::text || clock_timestamp()::text), {_lit(h)}, {_lit(f.id)}, "
        f"{_lit(op)}, current_user, 'psql', now() AT TIME ZONE 'utc');\n"
        f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
        "adopted, no_transaction, state)\n"
        f"VALUES ({_lit(f.id)}, {_lit(f.checksum)}, {_lit(f.rollback_checksum)}, "
        f"{_lit(adopted)}, {_lit(f.no_transaction)}, 'applied')\n"
        "ON CONFLICT (migration_id) DO UPDATE SET checksum = EXCLUDED.checksum, "
        "rollback_checksum = EXCLUDED.rollback_checksum, adopted = EXCLUDED.adopted, "
        "no_transaction = EXCLUDED.no_transaction, state = 'applied', applied_at = now(), "
        "applied_by = current_user;\n")


def in_progress_sql(f: MigrationFile, state: str) -> str:
    """Record a no-transaction file as in progress, before its first statement."""
    return (f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
            "no_transaction, state)\n"
            f"VALUES ({_lit(f.id)}, {_lit(f.checksum)}, {_lit(f.rollback_checksum)}, "
            f"{_lit(f.no_transaction)}, {_lit(state)})\n"
            "ON CONFLICT (migration_id) DO UPDATE SET state = EXCLUDED.state, "
            "checksum = EXCLUDED.checksum, rollback_checksum = EXCLUDED.rollback_checksum, "
            "applied_at = now(), applied_by = current_user;")


def unrecord_sql(f: MigrationFile) -> str:
    h = get_migration_hash(f.id)
    return (f"DELETE FROM {bk(MIGRATION_TABLE)} WHERE migration_hash = {_lit(h)};\n"
            f'INSERT INTO {bk("_yoyo_log")} (id, migration_hash, migration_id, operation, '
            "username, hostname, created_at_utc)\n"
            f"VALUES (md5(random()::text || clock_timestamp()::text), {_lit(h)}, {_lit(f.id)}, "
            "'rollback', current_user, 'psql', now() AT TIME ZONE 'utc');\n"
            f"DELETE FROM {bk(HARNESS_TABLE)} WHERE migration_id = {_lit(f.id)};")


# ---------------------------------------------------------------------------
# the parts a script is made of (plan --sql and rollback --sql)

def script_header(kind: str, p: dict, n: int, lock_timeout: str, statement_timeout: str,
                  regen: str) -> list[str]:
    """The header: what the script does, how to run it, what to do when it stops."""
    return [
        f"-- harness {kind} for {p['target']}",
        f"-- {n} step(s); review, then run with:",
        f"--   psql \"$DSN\" -X -f {kind.split()[0]}.sql",
        "-- Safety (the same as the harness's):",
        "--  * before anything changes, a DO block takes the harness's migration lock and",
        "--    checks that this database is in the state the script was generated for",
        "--    (catalog fingerprint of the public schema, what the bookkeeping records);",
        "--    otherwise it raises and nothing is changed;",
        f"--  * each transaction sets lock_timeout = '{lock_timeout}' (the longest the",
        "--    application queues behind one of its lock requests) and statement_timeout",
        f"--    = '{statement_timeout}'; each file commits together with its bookkeeping;",
        "--  * no-transaction files run statement by statement (autocommit), recorded as",
        "--    in progress first, as complete after their last statement.",
        "-- When it stops (psql exits 3 and prints the error):",
        "--  * 'canceling statement due to lock timeout' (55P03): a session held a lock",
        "--    this file needs; nothing of the file committed (psql cannot retry). Run the",
        "--    SAME script again once the blocker is gone: it resumes, skipping what is",
        "--    recorded (or run `harness apply`/`harness rollback`, which retry);",
        "--  * 'this script was generated for another database state': it changed",
        f"--    nothing: {regen}",
        "--    and run the new script;",
        "--  * any other error: nothing of the failing transactional file committed; a",
        "--    no-transaction file stays recorded as in progress (`harness status` shows",
        "--    it incomplete). Read `harness status`, then, from the new state:",
        f"--    {regen}, review it and run the new script.",
        "\\set ON_ERROR_STOP on",
        f"SET application_name = {_lit('harness-' + kind.split()[0] + '-sql')};",
        f"SET lock_timeout = {_lit(lock_timeout)};",
        "SET statement_timeout = 0;",
        "",
    ]


def set_role_sql(owner: str | None) -> list[str]:
    if not owner:
        return []
    q = '"' + owner.replace('"', '""') + '"'
    return ["-- every object is created as the owner of the baseline's tables",
            f"SET ROLE {q};", ""]


def timeouts_local(lock_timeout: str, statement_timeout: str) -> list[str]:
    return [f"SET LOCAL lock_timeout = {_lit(lock_timeout)};",
            f"SET LOCAL statement_timeout = {_lit(statement_timeout)};"]


def autocommit_statements(text: str, lock_timeout: str, statement_timeout: str,
                          concurrent_lock_timeout: str) -> list[str]:
    """A no-transaction file's statements, each sent on its own by psql (autocommit),
    CONCURRENTLY ones under the concurrent lock_timeout; INVALID indexes the file
    builds concurrently (an interrupted run's) dropped first."""
    out = []
    for name in created_indexes(text):
        out += _guard("EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = "
                      f"to_regclass({_lit(name)}) AND NOT i.indisvalid)",
                      [f"SET lock_timeout = {_lit(concurrent_lock_timeout)};",
                       f"DROP INDEX CONCURRENTLY IF EXISTS {name};",
                       f"SET lock_timeout = {_lit(lock_timeout)};"])
    out.append(f"SET statement_timeout = {_lit(statement_timeout)};")
    for stmt in split_statements(text):
        stmt = stmt.strip()
        if not stmt.endswith(";"):
            stmt += ";"
        if is_concurrent(stmt):
            out += [f"SET lock_timeout = {_lit(concurrent_lock_timeout)};", stmt,
                    f"SET lock_timeout = {_lit(lock_timeout)};"]
        else:
            out.append(stmt)
    out.append("SET statement_timeout = 0;")
    return out


def apply_block(f: MigrationFile, sim, lock_timeout: str, statement_timeout: str,
                concurrent_lock_timeout: str) -> list[str]:
    """Apply ``f`` with its bookkeeping, unless it is recorded as applied."""
    body = f.sql.rstrip()
    if f.no_transaction:
        sim.in_progress(f, "applying")
        sim.record(f)
        inner = (["-- no-transaction file: recorded as in progress, statements run in "
                  "autocommit mode, then recorded as complete",
                  in_progress_sql(f, "applying")]
                 + autocommit_statements(f.sql, lock_timeout, statement_timeout,
                                         concurrent_lock_timeout)
                 + ["BEGIN;", bookkeeping_sql(f).rstrip(), "COMMIT;"])
    else:
        sim.record(f)
        inner = (["BEGIN;", *timeouts_local(lock_timeout, statement_timeout), body, "",
                  "SET LOCAL statement_timeout = 0;", "-- bookkeeping",
                  bookkeeping_sql(f).rstrip(), "COMMIT;"])
    return _guard(f"NOT {_recorded(f)}", inner, f"{f.id} is recorded as applied: skipped")


def plan_sql(p: dict, *, lock_timeout: str = "100ms", statement_timeout: str = "0",
             concurrent_lock_timeout: str = "5min") -> str:
    """One psql script (``psql -X -f``) doing what apply would do, as safely."""
    sim = p["state"]
    sim = type(sim)(sim.entries)        # a fresh simulation from the generated-for state
    regen = "re-run `harness plan --sql` against this database"
    out = script_header("plan", p, len(p["pending"]), lock_timeout, statement_timeout,
                        regen)
    if not p["pending"]:
        out.append("-- nothing to do")
        return "\n".join(out) + "\n"
    body: list[str] = [bookkeeping_setup_sql(p), ""]
    for f in p["pending"]:
        body.append(f"-- ===== {f.id} ({f.relpath()}, sha256 {f.checksum})")
        if f.baseline and p["adopt_baseline"]:
            sim.record(f, adopted=True)
            body += _guard(
                f"NOT {_recorded(f)}",
                ["-- ADOPTED: the live schema matched the baseline when this script was "
                 "generated; recorded, not run, only if the live catalog is still that one",
                 "BEGIN;", script_check.adoption_guard(p["fingerprint"], f.id),
                 bookkeeping_sql(f, adopted=True).rstrip(), "COMMIT;"],
                f"{f.id} is recorded as applied: skipped")
            body.append("")
            continue
        if p.get("incomplete", {}).get(f.id) == "rollback":
            rb = (f.rollback_sql or "").rstrip()
            sim.unrecord(f)
            body.append("-- its rollback was interrupted (recorded as rolling_back): finish it")
            if f.rollback_no_transaction:
                inner = (autocommit_statements(rb, lock_timeout, statement_timeout,
                                               concurrent_lock_timeout)
                         + ["BEGIN;", unrecord_sql(f), "COMMIT;"])
            else:
                inner = ["BEGIN;", *timeouts_local(lock_timeout, statement_timeout), rb,
                         "SET LOCAL statement_timeout = 0;", unrecord_sql(f), "COMMIT;"]
            body += _guard(_recorded(f, "rolling_back"), inner)
        body += apply_block(f, sim, lock_timeout, statement_timeout, concurrent_lock_timeout)
        body.append("")
    out += set_role_sql(p.get("owner"))
    out += ["-- the run-time check: this database, in the state this script was made for",
            script_check.check_block(p["fingerprint"], sim, what="plan", target=p["target"]),
            ""]
    out += body
    out.append("\\echo done: every step of this script is recorded")
    return "\n".join(out) + "\n"
