"""What a psql script (``plan --sql``, ``rollback --sql``) checks at run time, and
the bookkeeping state it moves through.

psql has no advisory-lock wait, no drift check and no retry, so a script carries
its own proof that it runs against the state it was generated for. Two values
are computed by the SAME SQL text at generation time (through psycopg, against
the live database) and at run time (inside the script's first DO block):

* the *catalog fingerprint*: an md5 over the public schema's tables, columns and
  their types, defaults, constraints, indexes (and their validity), triggers,
  functions (signature, result, body digest, SECURITY DEFINER, settings), enums
  and views (:data:`FINGERPRINT_SQL`), with ``search_path`` set to ``public``;
* the *bookkeeping state*: one line per recorded id (``id state checksum
  [adopted] [unmarked]``, sorted, :data:`STATE_SQL`), read from the schema
  :data:`STATE_SCHEMA_SQL` picks.

The script accepts the state it was generated for (and then the catalog must have
the fingerprint), or one of the states a run of this very script leaves at a
commit point (a run that stopped: re-running the script resumes, skipping what is
recorded). Anything else raises before anything changed. The generator simulates
those states with :class:`StateSim`, formatting lines as :data:`STATE_SQL` does;
:func:`read` checks the two agree on the live state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .catalog import IGNORED_TABLES
from .errors import HarnessError
from .migration_lock import LOCK_KEY

_IGNORED = "ARRAY[" + ", ".join(f"'{t}'" for t in sorted(IGNORED_TABLES)) + "]::text[]"

#: md5 over the public schema's catalog (search_path must be ``public``)
FINGERPRINT_SQL = f"""SELECT md5(coalesce(string_agg(x, chr(10) ORDER BY x COLLATE "C"), ''))
FROM (
  SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' rls ' || c.relrowsecurity::text
         || ' ' || c.relforcerowsecurity::text
         || CASE WHEN c.relkind IN ('v', 'm')
                 THEN ' ' || md5(pg_catalog.pg_get_viewdef(c.oid, true)) ELSE '' END AS x
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
    AND NOT c.relname = ANY ({_IGNORED}) AND c.relname NOT LIKE 'yoyo\\_tmp\\_%'
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ' '
         || pg_catalog.format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0
    AND NOT a.attisdropped AND NOT c.relname = ANY ({_IGNORED})
    AND c.relname NOT LIKE 'yoyo\\_tmp\\_%'
  UNION ALL
  SELECT 'constraint ' || c.relname || '.' || k.conname || ' '
         || pg_catalog.pg_get_constraintdef(k.oid, true)
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND k.contype <> 'n' AND NOT c.relname = ANY ({_IGNORED})
  UNION ALL
  SELECT 'index ' || ic.relname || ' ' || pg_catalog.pg_get_indexdef(i.indexrelid)
         || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND NOT c.relname = ANY ({_IGNORED})
  UNION ALL
  SELECT 'trigger ' || c.relname || '.' || t.tgname || ' '
         || pg_catalog.pg_get_triggerdef(t.oid, false) || ' ' || t.tgenabled::text
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND NOT t.tgisinternal
  UNION ALL
  SELECT 'function ' || p.proname || '('
         || pg_catalog.pg_get_function_identity_arguments(p.oid) || ') '
         || coalesce(pg_catalog.pg_get_function_result(p.oid), '') || ' ' || p.prokind::text
         || ' ' || md5(coalesce(p.prosrc, '')) || ' ' || p.prosecdef::text || ' '
         || p.provolatile::text || ' ' || coalesce(array_to_string(p.proconfig, ','), '')
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'public'
  UNION ALL
  SELECT 'enum ' || t.typname || ' '
         || array_to_string(ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e
                                  WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder), ',')
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname = 'public' AND t.typtype = 'e'
) AS catalog_lines"""

#: which schema holds the bookkeeping (both yoyo's marks and the harness's rows)
STATE_SCHEMA_SQL = """SELECT CASE
  WHEN to_regclass('harness."_yoyo_migration"') IS NOT NULL
   AND to_regclass('harness."_harness_migration"') IS NOT NULL THEN 'harness'
  WHEN to_regclass('public."_yoyo_migration"') IS NOT NULL
   AND to_regclass('public."_harness_migration"') IS NOT NULL THEN 'public' END"""

#: the bookkeeping state, one line per id; ``{s}`` is the (quoted) schema
STATE_SQL = """SELECT coalesce(string_agg(e, chr(10) ORDER BY e COLLATE "C"), '') FROM (
  SELECT coalesce(h.migration_id, m.migration_id::text) || ' '
         || coalesce(to_jsonb(h) ->> 'state', 'applied') || ' '
         || coalesce(h.checksum, '-')
         || CASE WHEN h.adopted THEN ' adopted' ELSE '' END
         || CASE WHEN m.migration_id IS NULL THEN ' unmarked' ELSE '' END AS e
  FROM {s}."_yoyo_migration" m
  FULL JOIN {s}."_harness_migration" h ON h.migration_id = m.migration_id
) AS state_lines"""


@dataclass
class Entry:
    state: str
    checksum: str | None
    adopted: bool
    marked: bool

    def line(self, mid: str) -> str:
        return (f"{mid} {self.state} {self.checksum or '-'}"
                + (" adopted" if self.adopted else "") + ("" if self.marked else " unmarked"))


class StateSim:
    """The bookkeeping state as the script moves it, one snapshot per commit point."""

    def __init__(self, entries: dict[str, Entry]):
        self.entries = dict(entries)
        self.snapshots: list[str] = [self.text()]

    def text(self) -> str:
        return "\n".join(sorted(e.line(mid) for mid, e in self.entries.items()))

    def _snap(self) -> None:
        t = self.text()
        if t not in self.snapshots:
            self.snapshots.append(t)

    def record(self, f, *, adopted: bool = False) -> None:
        self.entries[f.id] = Entry("applied", f.checksum, adopted, True)
        self._snap()

    def in_progress(self, f, state: str) -> None:
        old = self.entries.get(f.id)
        self.entries[f.id] = Entry(state, f.checksum, old.adopted if old else False,
                                   old.marked if old else False)
        self._snap()

    def unrecord(self, f) -> None:
        self.entries.pop(f.id, None)
        self._snap()


def _fingerprint(conn) -> str:
    with conn.transaction():
        conn.execute("SELECT pg_catalog.set_config('search_path', 'public', true)")
        return conn.execute(FINGERPRINT_SQL).fetchone()[0]


def read(conn) -> tuple[str, StateSim]:
    """(the live catalog fingerprint, the live bookkeeping state) as the script
    will compute them at run time."""
    fp = _fingerprint(conn)
    schema = conn.execute(STATE_SCHEMA_SQL).fetchone()[0]
    entries: dict[str, Entry] = {}
    text = ""
    if schema is not None:
        q = f'"{schema}"'
        text = conn.execute(STATE_SQL.format(s=q)).fetchone()[0]
        rows = conn.execute(
            f"SELECT coalesce(h.migration_id, m.migration_id::text), "
            f"coalesce(to_jsonb(h) ->> 'state', 'applied'), h.checksum, "
            f"coalesce(h.adopted, false), m.migration_id IS NOT NULL "
            f'FROM {q}."_yoyo_migration" m FULL JOIN {q}."_harness_migration" h '
            f"ON h.migration_id = m.migration_id").fetchall()
        entries = {mid: Entry(st, cs, adopted, marked)
                   for mid, st, cs, adopted, marked in rows}
    sim = StateSim(entries)
    if sim.text() != text:
        raise HarnessError("internal error: the bookkeeping state read two ways differs",
                           details=[repr(sim.text()), repr(text)])
    return fp, sim


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _dollar(text: str, tag: str) -> str:
    assert f"${tag}$" not in text
    return f"${tag}${text}${tag}$"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def check_block(fingerprint: str, sim: StateSim, *, what: str, target: str) -> str:
    """The script's first DO block: the migration lock (one run per database, like
    the harness), then the run-time state check. ``sim.snapshots[0]`` is the state
    the script was generated for; the others are the commit points of a run of
    the same script that stopped (a re-run resumes)."""
    initial = sim.snapshots[0]
    later = sim.snapshots[1:]
    later_arr = ("ARRAY[" + ", ".join(_lit(_md5(t)) for t in later) + "]::text[]"
                 if later else "ARRAY[]::text[]")
    state_sql = STATE_SQL.format(s="%1$I")
    regen = "re-run harness plan --sql against this database" if what == "plan" else \
        "re-run harness rollback --sql against this database"
    return f"""DO $harness_check$
DECLARE
  found_fp text;
  found_state text;
  bk_schema text;
BEGIN
  IF NOT pg_catalog.pg_try_advisory_lock({LOCK_KEY}::bigint) THEN
    RAISE EXCEPTION 'another harness run (or script) holds the migration lock on this database; nothing was changed'
      USING HINT = 'wait for it to finish, then {regen}';
  END IF;
  PERFORM pg_catalog.set_config('search_path', 'public', true);
  EXECUTE {_dollar(STATE_SCHEMA_SQL, "q")} INTO bk_schema;
  IF bk_schema IS NULL THEN
    found_state := '';
  ELSE
    EXECUTE format({_dollar(state_sql, "q")}, bk_schema) INTO found_state;
  END IF;
  EXECUTE {_dollar(FINGERPRINT_SQL, "q")} INTO found_fp;
  IF md5(found_state) = {_lit(_md5(initial))} THEN
    IF found_fp <> {_lit(fingerprint)} THEN
      RAISE EXCEPTION 'this script was generated for another database state: the public schema differs from the one it was generated for; nothing was changed'
        USING DETAIL = 'expected catalog fingerprint ' || {_lit(fingerprint)}
                       || ' (the public schema of ' || {_lit(target)} || ' when the script was generated), found '
                       || found_fp || '; bookkeeping as expected: '
                       || CASE WHEN found_state = '' THEN '(nothing recorded)' ELSE replace(found_state, chr(10), '; ') END,
              HINT = '{regen}, review it and run the new script';
    END IF;
  ELSIF md5(found_state) = ANY ({later_arr}) THEN
    RAISE NOTICE 'resuming: an earlier run of this script committed part of it; what is recorded is skipped';
  ELSE
    RAISE EXCEPTION 'this script was generated for another database state: the bookkeeping differs; nothing was changed'
      USING DETAIL = 'expected recorded: '
                     || {_lit(initial.replace(chr(10), "; ") or "(nothing recorded)")}
                     || ' -- found recorded: '
                     || CASE WHEN found_state = '' THEN '(nothing recorded)' ELSE replace(found_state, chr(10), '; ') END
                     || ' (catalog fingerprint expected ' || {_lit(fingerprint)} || ', found ' || found_fp || ')',
            HINT = '{regen}, review it and run the new script';
  END IF;
END
$harness_check$;"""


def adoption_guard(fingerprint: str, baseline_id: str) -> str:
    """Inside the adoption's transaction: the live catalog is still the one the
    generator proved to be the baseline's, or nothing is recorded."""
    return f"""DO $harness_adopt$
DECLARE
  found_fp text;
BEGIN
  PERFORM pg_catalog.set_config('search_path', 'public', true);
  EXECUTE {_dollar(FINGERPRINT_SQL, "q")} INTO found_fp;
  IF found_fp <> {_lit(fingerprint)} THEN
    RAISE EXCEPTION 'refusing to record {baseline_id} as adopted: the live public schema is not the one harness plan proved to be the baseline; nothing was changed'
      USING DETAIL = 'expected catalog fingerprint ' || {_lit(fingerprint)} || ', found ' || found_fp,
            HINT = 're-run harness plan --sql against this database';
  END IF;
END
$harness_adopt$;"""
