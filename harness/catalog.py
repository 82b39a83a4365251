"""Catalog snapshot of one schema, and a readable diff of two snapshots.

Used for adoption (is the live ``public`` schema the baseline?) and by the
tests (apply -> rollback -> apply leaves an identical schema).

A snapshot is a plain dict::

    {"tables":    {name: {"columns": {col: {"type", "not_null", "default"}},
                          "column_order": [...],
                          "constraints": {name: {"type", "definition"}},
                          "indexes": {name: definition},
                          "triggers": {name: {"definition", "enabled"}},
                          "rls": [enabled, forced],
                          "policies": {name: definition}}},
     "enums":     {name: [labels in order]},
     "functions": {"name(args)": {"returns", "language", "body",
                                  "security_definer", "config", "volatility"}},
     "views":     {name: definition}}

Definitions are produced with ``search_path`` set to the inspected schema, so
names of that schema come out unqualified and two schemas built from the same
SQL compare equal. Bookkeeping tables (Prisma's, yoyo's, the harness's) and
objects that belong to extensions are ignored.
"""

from __future__ import annotations

import difflib
import re

from psycopg import sql

IGNORED_TABLES = frozenset({
    "_prisma_migrations", "_yoyo_migration", "_yoyo_log", "_yoyo_version",
    "yoyo_lock", "_harness_migration",
})

_TRIGGER_ENABLED = {"O": "origin", "D": "disabled", "R": "replica", "A": "always"}


def _ignored(name: str) -> bool:
    return name in IGNORED_TABLES or name.startswith("yoyo_tmp_")


def snapshot(conn, schema: str = "public") -> dict:
    """Snapshot ``schema`` through ``conn`` (psycopg 3 connection).

    Runs inside a transaction of its own (or a savepoint when one is open) so
    that ``SET LOCAL search_path`` does not leak into the session.
    """
    with conn.transaction():
        cur = conn.cursor()
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        return _snapshot(cur, schema)


def _snapshot(cur, schema: str) -> dict:
    """Tables (columns, constraints, indexes, triggers, RLS, policies), views, enums
    and functions of ``schema``, as comparable plain data.

    One function of about 120 lines on purpose: it is one pass of catalog queries
    in a fixed order that all fill the same ``snap`` and share the table-oid map;
    each block is one query and reads top to bottom like the snapshot it builds.
    """
    snap: dict = {"tables": {}, "enums": {}, "functions": {}, "views": {}}
    ext_dep = """NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = {cat}::regclass AND d.objid = {oid}
                              AND d.deptype = 'e')"""

    cur.execute(f"""
        SELECT c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm')
          AND {ext_dep.format(cat="'pg_class'", oid='c.oid')}
        ORDER BY c.relname""", (schema,))
    rels = cur.fetchall()
    tables = {}
    for oid, name, kind, rls, force in rels:
        if _ignored(name):
            continue
        if kind in ("v", "m"):
            cur.execute("SELECT pg_catalog.pg_get_viewdef(%s::oid, true)", (oid,))
            snap["views"][name] = {"kind": kind, "definition": cur.fetchone()[0].strip()}
            continue
        tables[oid] = name
        snap["tables"][name] = {"columns": {}, "column_order": [], "constraints": {},
                                "indexes": {}, "triggers": {}, "rls": [rls, force],
                                "policies": {}}
    oids = list(tables)

    cur.execute("""
        SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), a.attgenerated,
               a.attidentity
        FROM pg_catalog.pg_attribute a
        LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum""", (oids,))
    for relid, col, typ, notnull, default, generated, identity in cur.fetchall():
        t = snap["tables"][tables[relid]]
        entry = {"type": typ, "not_null": bool(notnull), "default": default}
        if generated:
            entry["generated"] = generated
        if identity:
            entry["identity"] = identity
        t["columns"][col] = entry
        t["column_order"].append(col)

    cur.execute("""
        SELECT conrelid, conname, contype, pg_catalog.pg_get_constraintdef(oid, true)
        FROM pg_catalog.pg_constraint
        WHERE conrelid = ANY(%s) AND contype <> 'n'
        ORDER BY conrelid, conname""", (oids,))
    for relid, name, ctype, definition in cur.fetchall():
        snap["tables"][tables[relid]]["constraints"][name] = {
            "type": ctype, "definition": definition}

    cur.execute("""
        SELECT i.indrelid, c.relname, pg_catalog.pg_get_indexdef(i.indexrelid), i.indisvalid
        FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = ANY(%s)
        ORDER BY i.indrelid, c.relname""", (oids,))
    qual = re.compile(r"\bON (ONLY )?" + re.escape(_qident(schema)) + r"\.")
    for relid, name, definition, valid in cur.fetchall():
        definition = qual.sub(lambda m: "ON " + (m.group(1) or ""), definition)
        if not valid:
            definition += " -- INVALID"
        snap["tables"][tables[relid]]["indexes"][name] = definition

    cur.execute("""
        SELECT t.tgrelid, t.tgname, pg_catalog.pg_get_triggerdef(t.oid, false), t.tgenabled,
               p.oid
        FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgrelid = ANY(%s) AND NOT t.tgisinternal
        ORDER BY t.tgrelid, t.tgname""", (oids,))
    trig_funcs = set()
    for relid, name, definition, enabled, foid in cur.fetchall():
        definition = qual.sub(lambda m: "ON " + (m.group(1) or ""),
                              re.sub(r"\s+", " ", definition).strip())
        snap["tables"][tables[relid]]["triggers"][name] = {
            "definition": definition, "enabled": _TRIGGER_ENABLED.get(enabled, enabled)}
        trig_funcs.add(foid)

    cur.execute("""
        SELECT polrelid, polname, polcmd, polpermissive,
               pg_catalog.pg_get_expr(polqual, polrelid),
               pg_catalog.pg_get_expr(polwithcheck, polrelid),
               ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END
                     FROM unnest(polroles) r ORDER BY 1)
        FROM pg_catalog.pg_policy WHERE polrelid = ANY(%s)""", (oids,))
    for relid, name, cmd, permissive, qual_expr, check, roles in cur.fetchall():
        snap["tables"][tables[relid]]["policies"][name] = {
            "cmd": cmd, "permissive": permissive, "using": qual_expr,
            "check": check, "roles": list(roles)}

    cur.execute(f"""
        SELECT t.typname, ARRAY(SELECT e.enumlabel FROM pg_catalog.pg_enum e
                                WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = %s AND t.typtype = 'e'
          AND {ext_dep.format(cat="'pg_type'", oid='t.oid')}
        ORDER BY t.typname""", (schema,))
    for name, labels in cur.fetchall():
        snap["enums"][name] = list(labels)

    cur.execute(f"""
        SELECT p.oid, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),
               pg_catalog.pg_get_function_result(p.oid), l.lanname, p.prosrc,
               p.prosecdef, p.proconfig, p.provolatile, p.prokind
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE n.nspname = %s AND p.prokind IN ('f', 'p')
          AND {ext_dep.format(cat="'pg_proc'", oid='p.oid')}
        ORDER BY p.proname, 3""", (schema,))
    for oid, name, args, result, lang, src, secdef, config, vol, kind in cur.fetchall():
        snap["functions"][f"{name}({args})"] = {
            "returns": result, "language": lang,
            "body": src or "",
            "security_definer": bool(secdef), "config": sorted(config or []),
            "volatility": vol, "kind": kind, "trigger_function": oid in trig_funcs,
        }
    return snap


def _qident(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def is_empty(snap: dict) -> bool:
    return not (snap["tables"] or snap["enums"] or snap["functions"] or snap["views"])


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return repr(v) if v is None or v == "" else str(v)


# Fields whose values are SQL text: a mismatch is shown as a unified diff.
_TEXT_FIELDS = frozenset({"definition", "body", "using", "check"})


def unified(expected: str, actual: str, labels: tuple[str, str]) -> list[str]:
    """Unified diff lines (indented, without trailing newlines) of two SQL texts."""
    lines = difflib.unified_diff(
        (expected or "").splitlines(), (actual or "").splitlines(),
        fromfile=labels[0], tofile=labels[1], lineterm="", n=2)
    return ["    " + line for line in lines]


def diff(expected: dict, actual: dict, *, column_order: bool = False,
         labels: tuple[str, str] = ("expected", "actual")) -> list[str]:
    """Differences of ``actual`` against ``expected``, one readable entry each.

    ``labels`` name the two sides in the messages, e.g. ("baseline",
    "production"): ``missing`` = only ``expected`` has it, ``unexpected`` = only
    ``actual`` has it, and a changed attribute says what each side has. SQL text
    (function bodies, constraint, index, trigger, view and policy definitions)
    is shown as a unified diff below its entry's first line. Column order is only
    compared when ``column_order`` is true.
    """
    exp_l, act_l = labels
    out: list[str] = []

    def mismatch(kind, name, field, a, b):
        head = f"{kind} {name}: {field} differs" if field else f"{kind} {name}: differs"
        if field in _TEXT_FIELDS or (field is None and isinstance(a, str)):
            out.append("\n".join([head + f" ({act_l} vs {exp_l}):",
                                   *unified(a, b, labels)]))
        else:
            out.append(f"{head}: {act_l} has {_fmt(b)}, {exp_l} expects {_fmt(a)}")

    def keyed(kind, a: dict, b: dict, label, compare):
        for k in sorted(set(a) | set(b)):
            name = label(k)
            if k not in b:
                out.append(f"{kind} {name}: missing ({exp_l} has it, {act_l} does not)")
            elif k not in a:
                out.append(f"{kind} {name}: unexpected ({act_l} has it, {exp_l} does not)")
            else:
                compare(name, a[k], b[k])

    def attrs(kind):
        def cmp(name, a, b):
            if isinstance(a, dict):
                for field in sorted(set(a) | set(b)):
                    if a.get(field) != b.get(field):
                        mismatch(kind, name, field, a.get(field), b.get(field))
            elif a != b:
                mismatch(kind, name, None, a, b)
        return cmp

    def table_cmp(tname, a, b):
        t = tname
        keyed("column", a["columns"], b["columns"], lambda c: f'{t}."{c}"', attrs("column"))
        if column_order and a["column_order"] != b["column_order"]:
            mismatch("table", t, "column order", a["column_order"], b["column_order"])
        keyed("constraint", a["constraints"], b["constraints"],
              lambda c: f'"{c}" on {t}', attrs("constraint"))
        keyed("index", a["indexes"], b["indexes"], lambda c: f'"{c}"', attrs("index"))
        keyed("trigger", a["triggers"], b["triggers"], lambda c: f'"{c}" on {t}',
              attrs("trigger"))
        if a.get("rls") != b.get("rls"):
            mismatch("table", t, "row level security (enabled, forced)",
                     a.get("rls"), b.get("rls"))
        keyed("policy", a.get("policies", {}), b.get("policies", {}),
              lambda c: f'"{c}" on {t}', attrs("policy"))

    keyed("table", expected["tables"], actual["tables"], lambda k: f'"{k}"', table_cmp)
    keyed("enum", expected["enums"], actual["enums"], lambda k: f'"{k}"',
          lambda n, a, b: a != b and mismatch("enum", n, "labels", a, b))
    keyed("function", expected["functions"], actual["functions"], lambda k: k,
          attrs("function"))
    keyed("view", expected["views"], actual["views"], lambda k: f'"{k}"', attrs("view"))
    return out


# ---------------------------------------------------------------------------
# privileges

def not_extension_member(catalog_table: str, oid: str) -> str:
    """SQL: the object ``oid`` of ``catalog_table`` (e.g. ``pg_class``, ``c.oid``)
    does not belong to an extension (pg_depend deptype 'e'): extensions such as
    pg_trgm, citext or pg_stat_statements installed into public are not the pack's."""
    return (f"NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
            f"'pg_catalog.{catalog_table}'::regclass AND d.objid = {oid} "
            "AND d.deptype = 'e')")


def extensions(conn) -> list[str]:
    """The installed extensions but plpgsql: ``name version (schema schema)``."""
    return [f"{n} {v} (schema {s})" for n, v, s in conn.execute(
        "SELECT e.extname, e.extversion, n.nspname FROM pg_catalog.pg_extension e "
        "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname <> 'plpgsql' ORDER BY 1").fetchall()]


_PRIVILEGES_SQL = f"""
    WITH objs AS (
        SELECT 'table' AS kind, c.relname::text AS name, c.relowner AS owner,
               coalesce(c.relacl, acldefault('r', c.relowner)) AS acl
        FROM pg_catalog.pg_class c
        WHERE c.relnamespace = %(ns)s::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
          AND {not_extension_member('pg_class', 'c.oid')}
        UNION ALL
        SELECT 'column', c.relname || '.' || a.attname, c.relowner, a.attacl
        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = %(ns)s::regnamespace AND c.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
          AND {not_extension_member('pg_class', 'c.oid')}
        UNION ALL
        SELECT 'function', p.proname || '(' ||
               pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
               p.proowner, coalesce(p.proacl, acldefault('f', p.proowner))
        FROM pg_catalog.pg_proc p WHERE p.pronamespace = %(ns)s::regnamespace
          AND {not_extension_member('pg_proc', 'p.oid')}
        UNION ALL
        SELECT 'schema', n.nspname::text, n.nspowner,
               coalesce(n.nspacl, acldefault('n', n.nspowner))
        FROM pg_catalog.pg_namespace n WHERE n.oid = %(ns)s::regnamespace
    )
    SELECT o.kind, o.name,
           CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                WHEN x.grantee = o.owner THEN '<owner>'
                ELSE pg_catalog.pg_get_userbyid(x.grantee) END,
           x.privilege_type
    FROM objs o, aclexplode(o.acl) x
    ORDER BY 1, 2, 3, 4"""


def privileges(conn, schema: str = "public") -> dict[str, list[str]]:
    """Who may do what on every object of ``schema``: ``{"table X": ["grantee PRIV",
    ...]}``. The object's owner is written ``<owner>`` so that two databases
    owned by different roles compare equal; bookkeeping tables are left out."""
    out: dict[str, list[str]] = {}
    for kind, name, grantee, priv in conn.execute(_PRIVILEGES_SQL, {"ns": schema}):
        if kind in ("table", "column") and _ignored(name.split(".")[0]):
            continue
        out.setdefault(f"{kind} {name}", []).append(f"{grantee} {priv}")
    return out


def privileges_diff(expected: dict, actual: dict, labels=("expected", "actual")) -> list[str]:
    """One line per grant that only one side has."""
    exp_l, act_l = labels
    out = []
    for obj in sorted(set(expected) | set(actual)):
        a, b = set(expected.get(obj, ())), set(actual.get(obj, ()))
        for g in sorted(b - a):
            out.append(f"privilege on {obj}: {g} unexpected ({act_l} grants it, "
                       f"{exp_l} do not)")
        for g in sorted(a - b):
            out.append(f"privilege on {obj}: {g} missing ({exp_l} grant it, "
                       f"{act_l} does not)")
    return out
