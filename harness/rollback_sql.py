"""``harness rollback --sql``: the psql script that rolls back by hand, as safely
as ``harness rollback``: the mirror of ``plan --sql`` (:mod:`harness.plan_sql`).

The rollback files run newest first, each in ``BEGIN; ... COMMIT;`` together with
the removal of its records (yoyo's mark, our row; a ``rollback`` row in
``_yoyo_log``), so that ``harness status`` afterwards reports exactly what is
applied. A no-transaction rollback is recorded as 'rolling_back' first, its
statements run in autocommit, then its records are removed. ``--preserve`` sets
``forgea.rollback_preserve = on`` for the whole script. The same run-time check
(catalog fingerprint and bookkeeping), lock_timeout, owner (``SET ROLE``) and
resume-on-re-run as the plan script. psql cannot run the harness's rollback probe
(every rollback in one transaction, rolled back): a rollback file that refuses
(FM002) stops the script at a recorded version, nothing of that file committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import script_check
from .adoption import baseline_owner, check_owner
from .apply import _rollback_victims
from .bookkeeping import (BOOKKEEPING_SCHEMA, LEGACY_SCHEMA, bk, bookkeeping_tables,
                          read_state, HARNESS_TABLE, MIGRATION_TABLE)
from .chain import MigrationFile, load_chain
from .chain_state import compute_status, refuse_rollback_drift
from .dsn import connect, redact
from .errors import UsageError
from .plan_sql import (_guard, _lit, autocommit_statements, bookkeeping_setup_sql,
                       in_progress_sql, script_header, set_role_sql, timeouts_local,
                       unrecord_sql)


def rollback_plan(target_dsn: str, *, to: str | None = None, steps: int | None = None,
                  sql_root: Path | None = None, err=None) -> dict:
    """What ``rollback`` would undo (read-only), after its refusals, with the owner
    and the state the script must find at run time."""
    if (to is None) == (steps is None):
        raise UsageError("rollback needs exactly one of --to VERSION or --steps N")
    if steps is not None and steps < 1:
        raise UsageError("--steps must be at least 1")
    files = load_chain(sql_root)
    by_id = {f.id: f for f in files}
    with connect(target_dsn) as conn:
        baseline = files[0] if files and files[0].baseline else None
        table_owner = baseline_owner(conn, baseline)[0] if baseline else None
        check_owner(conn, baseline, lambda m: print(m, file=err or sys.stderr))
        fingerprint, sim = script_check.read(conn)
        state = read_state(conn)
        st = compute_status(files, state, None)
        victims, incomplete = _rollback_victims(files, state, st, to, steps)
        refuse_rollback_drift(st, victims)
        found = bookkeeping_tables(conn)
        schema_exists = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL",
                                     (BOOKKEEPING_SCHEMA,)).fetchone()[0]
    return {"target": redact(target_dsn), "victims": [by_id[v] for v in victims],
            "incomplete": incomplete, "owner": table_owner, "fingerprint": fingerprint,
            "state": sim, "bookkeeping_schema_exists": schema_exists,
            "legacy_bookkeeping": found.get(LEGACY_SCHEMA, [])}


def _recorded_at_all(f: MigrationFile) -> str:
    return (f"(EXISTS (SELECT 1 FROM {bk(HARNESS_TABLE)} WHERE migration_id = {_lit(f.id)}) "
            f"OR EXISTS (SELECT 1 FROM {bk(MIGRATION_TABLE)} WHERE migration_id = "
            f"{_lit(f.id)}))")


def rollback_block(f: MigrationFile, sim, lock_timeout: str, statement_timeout: str,
                   concurrent_lock_timeout: str) -> list[str]:
    """Roll ``f`` back and remove its records, unless nothing of it is recorded."""
    text = (f.rollback_sql or "").rstrip()
    if f.rollback_no_transaction:
        sim.in_progress(f, "rolling_back")
        sim.unrecord(f)
        inner = (["-- no-transaction rollback: recorded as rolling_back, statements run in "
                  "autocommit mode, then its records removed",
                  in_progress_sql(f, "rolling_back")]
                 + autocommit_statements(text, lock_timeout, statement_timeout,
                                         concurrent_lock_timeout)
                 + ["BEGIN;", unrecord_sql(f), "COMMIT;"])
    else:
        sim.unrecord(f)
        inner = ["BEGIN;", *timeouts_local(lock_timeout, statement_timeout), text, "",
                 "SET LOCAL statement_timeout = 0;", "-- bookkeeping", unrecord_sql(f),
                 "COMMIT;"]
    return _guard(_recorded_at_all(f), inner, f"{f.id} is not recorded: skipped")


def rollback_sql(r: dict, *, preserve: bool = False, lock_timeout: str = "100ms",
                 statement_timeout: str = "0", concurrent_lock_timeout: str = "5min") -> str:
    """One psql script (``psql -X -f``) doing what rollback would do, as safely."""
    sim = r["state"]
    sim = type(sim)(sim.entries)
    regen = "re-run `harness rollback --sql` (same --to/--steps) against this database"
    out = script_header("rollback", r, len(r["victims"]), lock_timeout, statement_timeout,
                        regen)
    if not r["victims"]:
        out.append("-- nothing to roll back")
        return "\n".join(out) + "\n"
    body: list[str] = []
    if r["legacy_bookkeeping"] or not r["bookkeeping_schema_exists"]:
        body += [bookkeeping_setup_sql(r), ""]
    for f in r["victims"]:
        note = r["incomplete"].get(f.id)
        body.append(f"-- ===== roll back {f.id} ({f.rollback_relpath()}, "
                    f"sha256 {f.rollback_checksum})"
                    + (f"; its {note} was interrupted" if note else ""))
        body += rollback_block(f, sim, lock_timeout, statement_timeout,
                               concurrent_lock_timeout)
        body.append("")
    out += set_role_sql(r.get("owner"))
    out += ["-- the run-time check: this database, in the state this script was made for",
            script_check.check_block(r["fingerprint"], sim, what="rollback",
                                     target=r["target"]), ""]
    if preserve:
        out += ["-- --preserve: archive rows the older schema cannot hold",
                "SET forgea.rollback_preserve = on;", ""]
    out += body
    out.append("\\echo done: every step of this script is recorded")
    return "\n".join(out) + "\n"
