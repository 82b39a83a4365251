"""``harness plan`` and ``plan --sql``: what apply would do, read-only, and the one
psql script (``psql -v ON_ERROR_STOP=1 -f plan.sql``) that does it by hand.

The script wraps each transactional file in ``BEGIN; ... COMMIT;`` together with
the bookkeeping rows the harness would write; a no-transaction file is recorded
as in progress, run outside a transaction, then recorded as complete (an
interrupted rollback is finished first), exactly as :mod:`harness.runner` does.
Run by psql there is no advisory lock, drift check or lock retry.
"""

from __future__ import annotations

from pathlib import Path

from yoyo.migrations import get_migration_hash

from .adoption import adoption_check
from .bookkeeping import (BOOKKEEPING_SCHEMA, BOOKKEEPING_SQL, HARNESS_TABLE, LEGACY_SCHEMA,
                          MIGRATION_TABLE, bk, bookkeeping_tables, read_state)
from .chain import MigrationFile, load_chain
from .chain_state import compute_status, refuse_if_unsafe, select_pending
from .dsn import connect, redact
from .errors import AdoptionMismatch


def plan(target_dsn: str, sql_root: Path | None = None, to: str | None = None) -> dict:
    """Pending migrations (read-only), with the adoption decision."""
    files = load_chain(sql_root)
    with connect(target_dsn) as conn:
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


def bookkeeping_setup_sql(p: dict) -> str:
    """The bookkeeping part of a plan script: create the schema when missing, move
    an earlier harness's tables out of public, create what is missing."""
    out = []
    if not p.get("bookkeeping_schema_exists"):
        out.append(f"CREATE SCHEMA {BOOKKEEPING_SCHEMA};")
    if p.get("legacy_bookkeeping"):
        out.append(f"-- this database's bookkeeping is in {LEGACY_SCHEMA} (an earlier harness): "
                   "move it, rows and all")
        out += [f'ALTER TABLE {LEGACY_SCHEMA}."{t}" SET SCHEMA {BOOKKEEPING_SCHEMA};'
                for t in p["legacy_bookkeeping"]]
    return "\n".join(out + [BOOKKEEPING_SQL.rstrip()])


def bookkeeping_sql(f: MigrationFile, *, adopted: bool = False) -> str:
    h = get_migration_hash(f.id)
    op = "mark" if adopted else "apply"
    return (
        f"INSERT INTO {bk(MIGRATION_TABLE)} (migration_hash, migration_id, applied_at_utc)\n"
        f"VALUES ({_lit(h)}, {_lit(f.id)}, now() AT TIME ZONE 'utc');\n"
        f'INSERT INTO {bk("_yoyo_log")} (id, migration_hash, migration_id, operation, '
        "username, hostname, created_at_utc)\n"
        f"VALUES (md5(random()::text || clock_timestamp()::text), {_lit(h)}, {_lit(f.id)}, "
        f"{_lit(op)}, current_user, 'psql', now() AT TIME ZONE 'utc');\n"
        f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
        "adopted, no_transaction, state)\n"
        f"VALUES ({_lit(f.id)}, {_lit(f.checksum)}, {_lit(f.rollback_checksum)}, "
        f"{_lit(adopted)}, {_lit(f.no_transaction)}, 'applied')\n"
        "ON CONFLICT (migration_id) DO UPDATE SET state = 'applied', applied_at = now(), "
        "applied_by = current_user;\n")


def in_progress_sql(f: MigrationFile, state: str) -> str:
    """Record a no-transaction file as in progress, before its first statement."""
    return (f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, rollback_checksum, "
            "no_transaction, state)\n"
            f"VALUES ({_lit(f.id)}, {_lit(f.checksum)}, {_lit(f.rollback_checksum)}, "
            f"{_lit(f.no_transaction)}, {_lit(state)})\n"
            "ON CONFLICT (migration_id) DO UPDATE SET state = EXCLUDED.state, "
            "applied_at = now(), applied_by = current_user;")


def unrecord_sql(f: MigrationFile) -> str:
    h = get_migration_hash(f.id)
    return (f"DELETE FROM {bk(MIGRATION_TABLE)} WHERE migration_hash = {_lit(h)};\n"
            f'INSERT INTO {bk("_yoyo_log")} (id, migration_hash, migration_id, operation, '
            "username, hostname, created_at_utc)\n"
            f"VALUES (md5(random()::text || clock_timestamp()::text), {_lit(h)}, {_lit(f.id)}, "
            "'rollback', current_user, 'psql', now() AT TIME ZONE 'utc');\n"
            f"DELETE FROM {bk(HARNESS_TABLE)} WHERE migration_id = {_lit(f.id)};")


def plan_sql(p: dict) -> str:
    """One psql script (``psql -v ON_ERROR_STOP=1 -f``) doing what apply would do."""
    out = [f"-- harness plan for {p['target']}",
           f"-- {len(p['pending'])} pending migration(s); review, then run with:",
           "--   psql -v ON_ERROR_STOP=1 -f plan.sql",
           "-- Each transactional file runs in BEGIN/COMMIT together with its bookkeeping;",
           "-- no-transaction files are recorded as in progress, run outside a transaction,",
           "-- then recorded as complete.",
           "-- Note: run by psql, there is no advisory lock, drift check or 55P03 retry.",
           "\\set ON_ERROR_STOP on",
           "SET application_name = 'harness-plan';", ""]
    if not p["pending"]:
        out.append("-- nothing to do")
        return "\n".join(out) + "\n"
    out += ["BEGIN;", bookkeeping_setup_sql(p), "COMMIT;", ""]
    for f in p["pending"]:
        out.append(f"-- ===== {f.id} ({f.relpath()}, sha256 {f.checksum})")
        if f.baseline and p["adopt_baseline"]:
            out += ["-- ADOPTED: the live schema matches the baseline; recorded, not run.",
                    "BEGIN;", bookkeeping_sql(f, adopted=True).rstrip(), "COMMIT;", ""]
            continue
        body = f.sql if f.sql.endswith("\n") else f.sql + "\n"
        if p.get("incomplete", {}).get(f.id) == "rollback":
            rb = (f.rollback_sql or "").rstrip()
            out.append("-- its rollback was interrupted (recorded as rolling_back): finish it")
            if f.rollback_no_transaction:
                out += [rb, "BEGIN;", unrecord_sql(f), "COMMIT;", ""]
            else:
                out += ["BEGIN;", rb, unrecord_sql(f), "COMMIT;", ""]
        if f.no_transaction:
            out += ["-- no-transaction file: recorded as in progress, statements run in "
                    "autocommit mode, then recorded as complete",
                    in_progress_sql(f, "applying"), body.rstrip(),
                    "BEGIN;", bookkeeping_sql(f).rstrip(), "COMMIT;", ""]
        else:
            out += ["BEGIN;", body.rstrip(), "", "-- bookkeeping", bookkeeping_sql(f).rstrip(),
                    "COMMIT;", ""]
    return "\n".join(out) + "\n"
