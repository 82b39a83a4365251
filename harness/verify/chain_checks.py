"""The schema against the chain: recorded migrations, triggers, constraints,
indexes, and every definition as the applied files create it."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import psycopg

from .. import chain as chain_mod
from .. import reference
from ..sqlnames import IDENT, QUALIFIED, unquote
from .context import applied_files
from .queries import rows as _rows


def migration_chain(c, ctx) -> None:
    """The recorded migrations against the files under sql/: drift, unknown ids,
    pending files, changed rollbacks, adoption, interrupted files, chain problems."""
    files, state, require_complete = ctx.files, ctx.state, ctx.require_complete
    for p in ctx.chain_problems:
        c.fail(p.file, f"{p.rule}: {p.message}")
    if ctx.state_error:
        c.could_not_run("_harness_migration", ctx.state_error)
        return
    if not state:
        c.fail("_harness_migration", "no migration is recorded (missing or empty bookkeeping)")
        return
    by_id = {f.id: f for f in files}
    drift = [f"{mid} (recorded {rec['checksum'][:12]}..., file {by_id[mid].checksum[:12]}...)"
             for mid, rec in state.items()
             if mid in by_id and rec["checksum"] and rec["checksum"] != by_id[mid].checksum]
    if drift:
        c.fail("_harness_migration", "applied migration files were edited since they were "
               "applied (drift)", drift, len(drift))
    unknown = sorted(mid for mid in state if mid not in by_id)
    if unknown:
        c.fail("_harness_migration", "applied migrations unknown to this tree", unknown)
    pending = [f.id for f in files if f.id not in state]
    if pending:
        (c.fail if require_complete else c.info)(
            "sql/", f"{len(pending)} migration(s) pending", pending, len(pending))
    rb = [mid for mid, rec in state.items() if mid in by_id and rec["rollback_checksum"]
          and rec["rollback_checksum"] != by_id[mid].rollback_checksum]
    if rb:
        c.info("sql/rollback", "rollback files changed since apply", rb)
    adopted = [mid for mid, rec in state.items() if rec["adopted"]
               and mid in by_id and by_id[mid].baseline]
    if adopted:
        c.info("_harness_migration", "adopted (recorded without running)", adopted)
    incomplete = [f"{mid} ({rec['state']})" for mid, rec in sorted(state.items())
                  if rec.get("state", "applied") != "applied"]
    if incomplete:
        c.fail("_harness_migration", "no-transaction files interrupted half-way "
               "(`harness apply` redoes them, `harness rollback` undoes them)", incomplete)


def bookkeeping(c, ctx) -> None:
    """The bookkeeping read as evidence, not trusted: every recorded file carries the
    checksum of its file; only the baseline may be adopted; no applied_at lies in
    the future; the applied files were recorded in chain order (a file recorded
    before one it depends on is a record someone wrote, not a run)."""
    files, state = ctx.files, ctx.state
    if ctx.state_error:
        c.could_not_run("_harness_migration", ctx.state_error)
        return
    by_id = {f.id: f for f in files}
    missing = sorted(mid for mid, rec in state.items() if mid in by_id and not rec["checksum"])
    if missing:
        c.fail("_harness_migration", "recorded without the checksum of its file", missing)
    adopted = sorted(mid for mid, rec in state.items()
                     if rec["adopted"] and not (mid in by_id and by_id[mid].baseline))
    if adopted:
        c.fail("_harness_migration", "adopted (recorded without running) but not the "
               "baseline: only the baseline is ever adopted", adopted)
    now = ctx.conn.execute("SELECT pg_catalog.statement_timestamp()").fetchone()[0]
    future = sorted(f"{mid} ({rec['applied_at']})" for mid, rec in state.items()
                    if rec["applied_at"] is not None and rec["applied_at"] > now)
    if future:
        c.fail("_harness_migration", "applied_at in the future", future)
    order, latest = [], None
    for f in ctx.applied:
        at = state[f.id]["applied_at"]
        if at is None:
            c.fail("_harness_migration", f"{f.id}: recorded without applied_at")
            continue
        if latest is not None and at < latest[1]:
            order.append(f"{f.id} ({at}) before {latest[0]} ({latest[1]})")
        if latest is None or at >= latest[1]:
            latest = (f.id, at)
    if order:
        c.fail("_harness_migration", "recorded before a file it depends on (an order the "
               "chain contradicts)", order)


# --------------------------------------------------------------------------
# triggers

_CREATE_TRIGGER = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+"
                             rf"({IDENT})(.*?);", re.I | re.S)
_ON_TABLE = re.compile(rf"\bON\s+({QUALIFIED})", re.I)
_EXEC_FN = re.compile(rf"\bEXECUTE\s+(?:FUNCTION|PROCEDURE)\s+({QUALIFIED})\s*\(", re.I)
_DROP_TRIGGER = re.compile(rf"\bDROP\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?({IDENT})"
                           rf"\s+ON\s+({QUALIFIED})", re.I)
_ENABLE_ALWAYS = re.compile(rf"\bENABLE\s+ALWAYS\s+TRIGGER\s+({IDENT})", re.I)


@functools.lru_cache(maxsize=512)
def _strip_comments(text: str) -> str:
    """The file without comments (sqlparse: about 1 s for the whole chain, so each
    text is stripped once per process)."""
    import sqlparse
    return sqlparse.format(text, strip_comments=True)


def expected_triggers(files) -> dict[tuple[str, str], dict]:
    """(table, trigger) -> {"function", "always", "file"} from the files, in order."""
    out: dict[tuple[str, str], dict] = {}
    for f in files:
        text = _strip_comments(f.sql)
        events = []
        for m in _CREATE_TRIGGER.finditer(text):
            events.append((m.start(), "create", m))
        for m in _DROP_TRIGGER.finditer(text):
            events.append((m.start(), "drop", m))
        for m in _ENABLE_ALWAYS.finditer(text):
            events.append((m.start(), "always", m))
        # ENABLE ALWAYS applies to "ALTER TABLE x ENABLE ALWAYS TRIGGER t, ..."
        for pos, kind, m in sorted(events, key=lambda e: e[0]):
            if kind == "create":
                name = unquote(m.group(1))
                rest = m.group(2)
                t = _ON_TABLE.search(rest)
                fn = _EXEC_FN.search(rest)
                if not t:
                    continue
                out[(unquote(t.group(1)), name)] = {
                    "function": unquote(fn.group(1)) if fn else None,
                    "always": False, "file": f.id}
            elif kind == "drop":
                out.pop((unquote(m.group(2)), unquote(m.group(1))), None)
            else:
                name = unquote(m.group(1))
                for key, v in out.items():
                    if key[1] == name:
                        v["always"] = True
    return out


def guard_triggers(c, ctx) -> None:
    """Every trigger the applied files create exists on its table, calls the same
    function and fires ALWAYS; a legacy origin-mode trigger no file switched is info."""
    conn = ctx.conn
    if ctx.state_error:
        c.could_not_run("_harness_migration", "which triggers the applied files create is "
                        "unknown: " + ctx.state_error)
        return
    expected = expected_triggers(ctx.applied)
    live = {(t, n): (en, fn) for t, n, en, fn in _rows(conn, """
        SELECT c.relname, t.tgname, t.tgenabled::text, p.proname
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
        WHERE n.nspname = 'public' AND NOT t.tgisinternal""")}
    modes = {"O": "origin only (ENABLE)", "D": "DISABLED", "R": "replica only", "A": "ALWAYS"}
    for (table, name), exp in sorted(expected.items()):
        obj = f'trigger {name} on "{table}"'
        got = live.get((table, name))
        if got is None:
            c.fail(obj, f"missing (created by {exp['file']})")
            continue
        enabled, fn = got
        if exp["function"] and fn != exp["function"]:
            c.fail(obj, f"calls {fn}() instead of {exp['function']}()")
        if enabled != "A":
            if enabled == "O" and not exp["always"]:
                c.info(obj, "legacy trigger fires in origin mode only (no applied file "
                            "switched it to ENABLE ALWAYS)")
            else:
                c.fail(obj, f"is {modes.get(enabled, enabled)}, must fire ALWAYS "
                            "(tgenabled = 'A')")
    extra = sorted(f'trigger {n} on "{t}"' for (t, n) in live if (t, n) not in expected)
    if extra:
        c.info("public", "triggers not created by the applied migrations", extra)


# --------------------------------------------------------------------------
# constraints and indexes


def constraints_validated(c, ctx) -> None:
    """No NOT VALID constraint in public."""
    conn = ctx.conn
    for table, con, kind in _rows(conn, """
        SELECT cl.relname, co.conname, co.contype::text
        FROM pg_catalog.pg_constraint co
        JOIN pg_catalog.pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_catalog.pg_class cl ON cl.oid = co.conrelid
        WHERE n.nspname = 'public' AND NOT co.convalidated
        ORDER BY 1, 2"""):
        c.fail(f'constraint {con} on "{table}"', f"NOT VALID (type {kind}): old rows unchecked")


def indexes_valid(c, ctx) -> None:
    """No INVALID (or not ready) index in public."""
    conn = ctx.conn
    for table, idx, valid, ready in _rows(conn, """
        SELECT t.relname, i.relname, x.indisvalid, x.indisready
        FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
        JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = 'public' AND NOT (x.indisvalid AND x.indisready)
        ORDER BY 1, 2"""):
        c.fail(f'index {idx} on "{table}"',
               "INVALID (an interrupted CREATE INDEX CONCURRENTLY?)" if not valid
               else "not ready")


# --------------------------------------------------------------------------
# every definition


def definitions(c, ctx) -> None:
    """Every object of public as the applied files create it (harness.reference):
    function source and attributes, triggers with their functions, timing, events
    and mode, constraints, indexes, enums, columns and grants. Names alone prove
    nothing: the owner can replace what a name points at."""
    conn, ref = ctx.conn, ctx.reference
    if ref.get("local"):
        why = str(ref["error"])
        c.could_not_run("reference", why if why.startswith("could not check")
                        else f"could not check: {why}", local=True)
        return
    if ref.get("denied"):
        c.could_not_run("reference", ref["error"])
        return
    if "error" in ref:
        c.fail("reference", f"could not build what the applied files create: {ref['error']}")
        return
    diffs = reference.differences(ref, reference.snapshot_of(conn))
    for d in diffs:
        head, _, rest = d.partition("\n")
        c.fail(head.split(":", 1)[0], head.split(":", 1)[1].strip() + ("\n" + rest if rest
                                                                        else ""))
    if not diffs:
        c.info("public", f"{len(ref['catalog']['functions'])} functions, "
                         f"{len(ref['catalog']['tables'])} tables and their grants are as "
                         "the applied files create them")


def build_reference(conn, sql_root: Path | None = None, *, cache: bool = True) -> dict:
    """The reference for the files applied on ``conn``'s database, built on a
    throwaway server of the same major (or read from the cache of earlier builds,
    unless ``cache`` is False); ``{"error": ...}`` when that fails, with
    ``"local": True`` when the failure is this machine's (no binaries, no scratch
    server, an unusable cache) and ``"denied": True`` when this role may not read
    the bookkeeping."""
    from ..errors import LocalProblem
    from ..pg_binaries import ServerError, ServerNotFound
    root = Path(sql_root) if sql_root else chain_mod.default_sql_root()
    files, _ = chain_mod.scan(root)
    try:
        _state, applied = applied_files(conn, files)
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    except psycopg.errors.InsufficientPrivilege as e:
        return {"error": f"could not run: {(e.diag.message_primary or str(e)).strip()} "
                         "(the connecting role lacks this privilege)", "denied": True}
    try:
        return reference.build(major, applied, root, reference.cache_dir() if cache else None)
    except LocalProblem as e:
        return {"error": e.message, "local": True}
    except (ServerNotFound, ServerError, OSError) as e:
        return {"error": f"no scratch PostgreSQL {major} server for the reference: "
                         f"{type(e).__name__}: {e}".strip(), "local": True}
    except Exception as e:  # the files failed on the scratch server: the check says so
        return {"error": f"{type(e).__name__}: {e}".strip()}
