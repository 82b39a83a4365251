"""``harness repair``: changing the bookkeeping explicitly, never blindly.

What Flyway's ``repair`` / ``baseline`` and sqitch's ``--log-only`` give, with a
proof first:

* ``check-adoption`` compares an adoption record (the baseline recorded as
  applied without running it) with the live catalog: the baseline's catalog
  (built in a scratch schema, :mod:`harness.adoption`) when only the baseline is
  recorded, else what the recorded files create (built on a throwaway server,
  :mod:`harness.reference`). ``--fix`` removes a false record, and only when
  nothing newer is recorded on top of it.
* ``mark-applied V`` records V as applied after a DBA ran it by hand, only when
  every older file is recorded and the live catalog (and grants) are what the
  chain up to V creates; ``mark-pending V`` removes V's records after a DBA
  rolled it back by hand, only when V is the newest recorded file and the live
  catalog is what the chain before V creates. Otherwise refused (exit 3) with
  the differences; nothing changed.

Every change is written, in the same transaction and under the migration lock,
to ``harness._harness_repair_log`` (who: ``current_user`` and ``session_user``;
when; what; why: ``--reason`` is required; the evidence).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from yoyo.migrations import get_migration_hash

from . import catalog, reference
from .adoption import check_owner, expected_baseline_catalog
from .bookkeeping import (BOOKKEEPING_SCHEMA, BOOKKEEPING_SQL, HARNESS_TABLE, LEGACY_SCHEMA,
                          MIGRATION_TABLE, REPAIR_LOG_DDL, REPAIR_LOG_TABLE, bk,
                          bookkeeping_schema, read_state)
from .chain import MigrationFile, find, find_repo_root, load_chain
from .chain_state import compute_status
from .dsn import connect, redact
from .errors import EXIT_LOCAL, HarnessError, RefusedError, UsageError
from .migration_lock import MigrationLock


class CouldNotCheck(HarnessError):
    """The reference could not be built (binaries, a throwaway server): nothing was
    checked, nothing was changed."""

    exit_code = EXIT_LOCAL


@dataclass
class RepairResult:
    target: str
    action: str
    migration_id: str | None = None
    changed: bool = False
    ok: bool = True                   # check-adoption: the record is true (or absent)
    message: str = ""
    differences: list[str] = field(default_factory=list)


def _say(err):
    return lambda m: print(m, file=err or sys.stderr, flush=True)


def _require_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise UsageError("--reason TEXT is required: every change to the bookkeeping is "
                         "logged with why it was made")
    return reason.strip()


class _Repair:
    """A connection acting as the baseline tables' owner, holding the migration lock."""

    def __init__(self, dsn: str, sql_root, err, lock_wait: float):
        self.dsn, self.err = dsn, err
        self.files = load_chain(sql_root)
        self.sql_root = Path(sql_root) if sql_root else None
        self.conn = connect(dsn)
        self.lock = MigrationLock(self.conn)
        try:
            baseline = self.files[0] if self.files and self.files[0].baseline else None
            check_owner(self.conn, baseline, _say(err))
            self.lock.acquire(lock_wait, _say(err))
            schema = bookkeeping_schema(self.conn)
            if schema == LEGACY_SCHEMA:
                raise RefusedError(
                    "refusing to repair: the bookkeeping is still in schema public (an "
                    "earlier harness); `harness apply` or `harness rollback` moves it first; "
                    "nothing was changed")
        except BaseException:
            self.close()
            raise

    def close(self):
        self.lock.release()
        self.conn.close()

    def state(self):
        state = read_state(self.conn)
        return state, compute_status(self.files, state, None)

    def live(self) -> dict:
        return reference.snapshot_of(self.conn)

    def reference_of(self, files: list[MigrationFile]) -> dict:
        """What ``files`` create, on a throwaway server of the live major."""
        major = self.conn.info.server_version // 10000
        try:
            cache = find_repo_root() / ".harness" / "reference"
        except Exception:
            cache = None
        try:
            return reference.build(major, files, self.sql_root, cache)
        except Exception as e:
            raise CouldNotCheck(
                f"could not build what the files create on a throwaway PostgreSQL {major} "
                f"server, so nothing was checked and nothing was changed: "
                f"{type(e).__name__}: {str(e).strip()}") from e

    def write(self, f: MigrationFile, action: str, reason: str, evidence: str) -> None:
        """Change ``f``'s records (``action``: mark-applied, mark-pending, or
        remove-adoption) and log it, in one transaction."""
        h = get_migration_hash(f.id)
        with self.conn.transaction():
            self.conn.execute("SET LOCAL client_min_messages = warning")
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING_SCHEMA}")
            self.conn.execute(BOOKKEEPING_SQL)
            self.conn.execute(REPAIR_LOG_DDL)
            if action == "mark-applied":
                self.conn.execute(
                    f"INSERT INTO {bk(MIGRATION_TABLE)} (migration_hash, migration_id, "
                    "applied_at_utc) VALUES (%s, %s, now() AT TIME ZONE 'utc') "
                    "ON CONFLICT (migration_hash) DO NOTHING", (h, f.id))
                self.conn.execute(
                    f"INSERT INTO {bk(HARNESS_TABLE)} (migration_id, checksum, "
                    "rollback_checksum, adopted, no_transaction, state) "
                    "VALUES (%s, %s, %s, false, %s, 'applied') ON CONFLICT (migration_id) "
                    "DO UPDATE SET checksum = EXCLUDED.checksum, rollback_checksum = "
                    "EXCLUDED.rollback_checksum, adopted = false, state = 'applied', "
                    "applied_at = now(), applied_by = current_user",
                    (f.id, f.checksum, f.rollback_checksum, f.no_transaction))
            else:
                self.conn.execute(f"DELETE FROM {bk(MIGRATION_TABLE)} WHERE migration_id = %s",
                                  (f.id,))
                self.conn.execute(f"DELETE FROM {bk(HARNESS_TABLE)} WHERE migration_id = %s",
                                  (f.id,))
            self.conn.execute(
                f'INSERT INTO {bk("_yoyo_log")} (id, migration_hash, migration_id, operation, '
                "username, hostname, comment, created_at_utc) VALUES (md5(random()::text || "
                "clock_timestamp()::text), %s, %s, %s, current_user, 'harness repair', %s, "
                "now() AT TIME ZONE 'utc')",
                (h, f.id, "mark" if action == "mark-applied" else "unmark", reason[:255]))
            self.conn.execute(
                f"INSERT INTO {bk(REPAIR_LOG_TABLE)} (action, migration_id, reason, evidence) "
                "VALUES (%s, %s, %s, %s)", (action, f.id, reason, evidence))


def _repair(dsn, sql_root, err, lock_wait):
    return _Repair(dsn, sql_root, err, lock_wait)


def check_adoption(dsn: str, *, fix: bool = False, reason: str | None = None,
                   sql_root: Path | None = None, err=None, lock_wait: float = 30.0
                   ) -> RepairResult:
    """Is the recorded adoption of the baseline true of the live catalog?"""
    if fix:
        reason = _require_reason(reason)
    res = RepairResult(redact(dsn), "check-adoption")
    r = _repair(dsn, sql_root, err, lock_wait)
    try:
        baseline = r.files[0]
        state, st = r.state()
        rec = state.get(baseline.id)
        res.migration_id = baseline.id
        if not baseline.baseline or rec is None or not rec.get("adopted"):
            res.message = f"no adoption is recorded ({baseline.id} is " + (
                "recorded as applied by running it)" if rec else "not recorded)")
            return res
        applied = [a["id"] for a in st["applied"]]
        live = r.live()
        if applied == [baseline.id]:
            expected = expected_baseline_catalog(r.conn, baseline)
            res.differences = catalog.diff(expected, live["catalog"],
                                           labels=("baseline", "live"))
            against = f"the catalog {baseline.id} creates"
        else:
            by_id = {f.id: f for f in r.files}
            ref = r.reference_of([by_id[i] for i in applied if i in by_id])
            res.differences = catalog.diff(ref["catalog"], live["catalog"],
                                           labels=("applied files", "live"))
            against = f"what the {len(applied)} recorded files create"
        if not res.differences:
            res.message = (f"the adoption of {baseline.id} is true: the live public schema "
                           f"is {against}")
            return res
        res.ok = False
        res.message = (f"the adoption of {baseline.id} is FALSE: the live public schema is "
                       f"not {against} ({len(res.differences)} difference(s))")
        if not fix:
            return res
        newer = [i for i in applied if i != baseline.id] + [
            i["id"] for i in st["incomplete"]]
        if newer:
            raise RefusedError(
                f"refusing to remove the adoption of {baseline.id}: newer files are recorded "
                "on top of it; nothing was changed",
                details=newer + ["for each, newest first, after checking what the database "
                                 "holds: harness repair mark-pending VERSION --reason TEXT"])
        r.write(baseline, "remove-adoption", reason,
                "\n".join([res.message, *res.differences])[:100000])
        res.changed = True
        res.message += f"; the adoption record was removed: {baseline.id} is pending again"
        return res
    finally:
        r.close()


def _refuse_mismatch(verb: str, f: MigrationFile, against: str, diffs: list[str]):
    raise RefusedError(
        f"refusing to mark {f.id} {verb}: the live database is not {against} "
        f"({len(diffs)} difference(s)); nothing was changed", details=diffs)


def mark_applied(dsn: str, version: str, *, reason: str | None, sql_root: Path | None = None,
                 err=None, lock_wait: float = 30.0) -> RepairResult:
    """Record ``version`` as applied after a DBA ran it by hand (see the module docstring)."""
    reason = _require_reason(reason)
    r = _repair(dsn, sql_root, err, lock_wait)
    try:
        f = find(r.files, version)
        res = RepairResult(redact(dsn), "mark-applied", f.id)
        state, st = r.state()
        applied = {a["id"] for a in st["applied"]}
        if f.id in applied:
            raise RefusedError(f"{f.id} is already recorded as applied; nothing was changed")
        older = [g.id for g in r.files if g.version < f.version and g.id not in applied]
        if older:
            raise RefusedError(f"refusing to mark {f.id} applied: older files are not "
                               "recorded as applied; nothing was changed", details=older)
        upto = [g for g in r.files if g.version <= f.version]
        diffs = reference.differences(r.reference_of(upto), r.live())
        if diffs:
            _refuse_mismatch("applied", f, f"what the chain up to {f.id} creates", diffs)
        r.write(f, "mark-applied", reason,
                f"live catalog and grants equal what the chain up to {f.id} creates")
        res.changed = True
        res.message = f"{f.id} is recorded as applied (the live catalog matched)"
        return res
    finally:
        r.close()


def mark_pending(dsn: str, version: str, *, reason: str | None, sql_root: Path | None = None,
                 err=None, lock_wait: float = 30.0) -> RepairResult:
    """Remove ``version``'s records after a DBA rolled it back by hand."""
    reason = _require_reason(reason)
    r = _repair(dsn, sql_root, err, lock_wait)
    try:
        f = find(r.files, version)
        res = RepairResult(redact(dsn), "mark-pending", f.id)
        state, st = r.state()
        recorded = [a["id"] for a in st["applied"]] + [i["id"] for i in st["incomplete"]]
        if f.id not in recorded:
            raise RefusedError(f"{f.id} is not recorded; nothing was changed")
        newer = [g.id for g in r.files if g.version > f.version and g.id in recorded]
        if newer:
            raise RefusedError(f"refusing to mark {f.id} pending: newer files are recorded; "
                               "mark them pending first (newest first); nothing was changed",
                               details=newer)
        before = [g for g in r.files if g.version < f.version]
        diffs = reference.differences(r.reference_of(before), r.live())
        if diffs:
            _refuse_mismatch("pending", f, "what the chain before it creates"
                             if before else "an empty public schema", diffs)
        r.write(f, "mark-pending", reason,
                f"live catalog and grants equal what the chain before {f.id} creates")
        res.changed = True
        res.message = f"{f.id} is pending again (its records were removed)"
        return res
    finally:
        r.close()

