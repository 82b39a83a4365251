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


# ---------------------------------------------------------------------------
# every other object of the database: what snapshot() does not see

#: schemas that are the system's, never the pack's or the owner's
SYSTEM_SCHEMAS_SQL = ("n.nspname NOT IN ('pg_catalog', 'information_schema') "
                      "AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'")

#: objects created by initdb have oids below this (FirstNormalObjectId)
_FIRST_NORMAL_OID = 16384


def _ext_free(catalog_table: str, oid: str) -> str:
    """SQL: created after initdb and not an extension member (pg_depend deptype 'e')."""
    return (f"{oid} >= {_FIRST_NORMAL_OID} AND NOT EXISTS (SELECT 1 FROM "
            f"pg_catalog.pg_depend e_dep WHERE e_dep.classid = "
            f"'pg_catalog.{catalog_table}'::regclass AND e_dep.objid = {oid} "
            "AND e_dep.deptype = 'e')")


#: what the harness keeps in its own schemas, left out of :func:`objects` (on both
#: sides, so the legacy layout with the bookkeeping still in public compares equal):
#: in ``harness`` the bookkeeping tables (IGNORED_TABLES, yoyo's temporary tables)
#: and the repair log with its id sequence;
#: in ``forgea_archive`` the tables forgea_archive_copy() makes, named
#: ``<table>_V<nnnn>_<YYYYMMDD>T<HHMMSSmmm>``. The two schemas themselves are
#: expected. Anything else there (a function, a view, a trigger, another table) is
#: compared like any other object.
#: the harness's repair log (harness.bookkeeping.REPAIR_LOG_TABLE), made on first use
_REPAIR_LOG = "_harness_repair_log"
_HARNESS_OWN = ("((n.nspname = 'harness' AND (c.relname IN ("
                + ", ".join(f"'{t}'" for t in sorted(IGNORED_TABLES | {_REPAIR_LOG}))
                + f") OR c.relname ~ '^yoyo_tmp_' OR (c.relkind = 'S' AND c.relname = "
                f"'{_REPAIR_LOG}_id_seq'))) OR (n.nspname = 'forgea_archive' "
                "AND c.relkind = 'r' AND c.relname ~ '_V[0-9]{4}_[0-9]{8}T[0-9]{9}$'))")

#: kind -> SQL returning (identity, definition); each row one object of the database
#: that changes what the pack's code does and that snapshot() does not cover:
#: objects of every non-system schema (public's tables, views, enums and functions
#: are snapshot()'s), and the database-wide ones (casts, event triggers, default
#: privileges, foreign data wrappers and servers, publications). Extension members
#: and objects of initdb are left out. Identities are pg_identify_object's, so two
#: databases built from the same files compare equal.
_OBJECT_QUERIES: dict[str, str] = {
    "routine": f"""
        SELECT (pg_catalog.pg_identify_object('pg_proc'::regclass, p.oid, 0)).identity,
               p.prokind::text || ' ' || l.lanname || ' returns '
               || pg_catalog.pg_get_function_result(p.oid)
               || ' secdef=' || p.prosecdef::text
               || ' config=' || coalesce(array_to_string(p.proconfig, ','), '')
               || ' src=' || pg_catalog.md5(coalesce(p.prosrc, ''))
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_proc', 'p.oid')}
          AND (n.nspname <> 'public' OR p.prokind NOT IN ('f', 'p'))""",
    "operator": f"""
        SELECT (pg_catalog.pg_identify_object('pg_operator'::regclass, o.oid, 0)).identity,
               o.oprcode::regprocedure::text || ' result ' || o.oprresult::regtype::text
        FROM pg_catalog.pg_operator o
        JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_operator', 'o.oid')}""",
    "operator class": f"""
        SELECT (pg_catalog.pg_identify_object('pg_opclass'::regclass, o.oid, 0)).identity,
               o.opcdefault::text
        FROM pg_catalog.pg_opclass o
        JOIN pg_catalog.pg_namespace n ON n.oid = o.opcnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_opclass', 'o.oid')}""",
    "operator family": f"""
        SELECT (pg_catalog.pg_identify_object('pg_opfamily'::regclass, o.oid, 0)).identity, ''
        FROM pg_catalog.pg_opfamily o
        JOIN pg_catalog.pg_namespace n ON n.oid = o.opfnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_opfamily', 'o.oid')}""",
    "cast": f"""
        SELECT (pg_catalog.pg_identify_object('pg_cast'::regclass, c.oid, 0)).identity,
               coalesce(c.castfunc::regprocedure::text, '-') || ' context '
               || c.castcontext::text || ' method ' || c.castmethod::text
        FROM pg_catalog.pg_cast c
        WHERE {_ext_free('pg_cast', 'c.oid')}""",
    "type": f"""
        SELECT (pg_catalog.pg_identify_object('pg_type'::regclass, t.oid, 0)).identity,
               t.typtype::text || ' ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)
               || coalesce(' check ' || (SELECT string_agg(
                      pg_catalog.pg_get_constraintdef(k.oid), ' AND ' ORDER BY k.conname)
                   FROM pg_catalog.pg_constraint k WHERE k.contypid = t.oid), '')
        FROM pg_catalog.pg_type t
        JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_catalog.pg_class r ON r.oid = t.typrelid
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_type', 't.oid')}
          AND (r.oid IS NULL OR r.relkind = 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.typarray = t.oid)
          AND NOT (n.nspname = 'public' AND t.typtype = 'e')""",
    "relation": f"""
        SELECT (pg_catalog.pg_identify_object('pg_class'::regclass, c.oid, 0)).identity,
               c.relkind::text || CASE WHEN c.relkind IN ('v', 'm')
                   THEN ' ' || pg_catalog.md5(pg_catalog.pg_get_viewdef(c.oid)) ELSE '' END
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_class', 'c.oid')}
          AND c.relkind NOT IN ('i', 'I', 't')
          AND n.nspname <> 'public' AND NOT {_HARNESS_OWN}""",
    "trigger": f"""
        SELECT (pg_catalog.pg_identify_object('pg_trigger'::regclass, t.oid, 0)).identity,
               t.tgfoid::regprocedure::text || ' ' || t.tgenabled::text
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND n.nspname <> 'public' AND NOT t.tgisinternal""",
    "rule": f"""
        SELECT (pg_catalog.pg_identify_object('pg_rewrite'::regclass, r.oid, 0)).identity,
               pg_catalog.md5(pg_catalog.pg_get_ruledef(r.oid))
        FROM pg_catalog.pg_rewrite r
        JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND r.rulename <> '_RETURN'
          AND {_ext_free('pg_rewrite', 'r.oid')}""",
    "policy": f"""
        SELECT (pg_catalog.pg_identify_object('pg_policy'::regclass, p.oid, 0)).identity,
               p.polcmd::text || ' ' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '')
               || ' / ' || coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
        FROM pg_catalog.pg_policy p
        JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND n.nspname <> 'public'""",
    "statistics object": f"""
        SELECT (pg_catalog.pg_identify_object('pg_statistic_ext'::regclass, s.oid, 0)).identity,
               ''
        FROM pg_catalog.pg_statistic_ext s
        JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_statistic_ext', 's.oid')}""",
    "collation": f"""
        SELECT (pg_catalog.pg_identify_object('pg_collation'::regclass, c.oid, 0)).identity,
               c.collprovider::text
        FROM pg_catalog.pg_collation c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_collation', 'c.oid')}""",
    "conversion": f"""
        SELECT (pg_catalog.pg_identify_object('pg_conversion'::regclass, c.oid, 0)).identity,
               c.conproc::regprocedure::text || ' default ' || c.condefault::text
        FROM pg_catalog.pg_conversion c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_conversion', 'c.oid')}""",
    "text search configuration": f"""
        SELECT (pg_catalog.pg_identify_object('pg_ts_config'::regclass, c.oid, 0)).identity, ''
        FROM pg_catalog.pg_ts_config c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_ts_config', 'c.oid')}""",
    "text search dictionary": f"""
        SELECT (pg_catalog.pg_identify_object('pg_ts_dict'::regclass, d.oid, 0)).identity, ''
        FROM pg_catalog.pg_ts_dict d
        JOIN pg_catalog.pg_namespace n ON n.oid = d.dictnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_ts_dict', 'd.oid')}""",
    "text search parser": f"""
        SELECT (pg_catalog.pg_identify_object('pg_ts_parser'::regclass, p.oid, 0)).identity, ''
        FROM pg_catalog.pg_ts_parser p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.prsnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_ts_parser', 'p.oid')}""",
    "text search template": f"""
        SELECT (pg_catalog.pg_identify_object('pg_ts_template'::regclass, t.oid, 0)).identity, ''
        FROM pg_catalog.pg_ts_template t
        JOIN pg_catalog.pg_namespace n ON n.oid = t.tmplnamespace
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_ts_template', 't.oid')}""",
    "event trigger": f"""
        SELECT (pg_catalog.pg_identify_object('pg_event_trigger'::regclass, e.oid, 0)).identity,
               e.evtevent::text || ' ' || e.evtfoid::regprocedure::text || ' '
               || e.evtenabled::text
        FROM pg_catalog.pg_event_trigger e
        WHERE {_ext_free('pg_event_trigger', 'e.oid')}""",
    "default privileges": f"""
        SELECT (pg_catalog.pg_identify_object('pg_default_acl'::regclass, d.oid, 0)).identity,
               d.defaclacl::text
        FROM pg_catalog.pg_default_acl d
        WHERE {_ext_free('pg_default_acl', 'd.oid')}""",
    "foreign data wrapper": f"""
        SELECT (pg_catalog.pg_identify_object('pg_foreign_data_wrapper'::regclass, w.oid, 0)
               ).identity, ''
        FROM pg_catalog.pg_foreign_data_wrapper w
        WHERE {_ext_free('pg_foreign_data_wrapper', 'w.oid')}""",
    "foreign server": f"""
        SELECT (pg_catalog.pg_identify_object('pg_foreign_server'::regclass, s.oid, 0)
               ).identity, ''
        FROM pg_catalog.pg_foreign_server s
        WHERE {_ext_free('pg_foreign_server', 's.oid')}""",
    "publication": f"""
        SELECT (pg_catalog.pg_identify_object('pg_publication'::regclass, p.oid, 0)).identity,
               ''
        FROM pg_catalog.pg_publication p
        WHERE {_ext_free('pg_publication', 'p.oid')}""",
    "schema": f"""
        SELECT (pg_catalog.pg_identify_object('pg_namespace'::regclass, n.oid, 0)).identity,
               ''
        FROM pg_catalog.pg_namespace n
        WHERE {SYSTEM_SCHEMAS_SQL} AND {_ext_free('pg_namespace', 'n.oid')}
          AND n.nspname NOT IN ('public', 'harness', 'forgea_archive')""",
}


def objects(conn) -> dict[str, dict[str, str]]:
    """``{kind: {identity: definition}}`` for every object :data:`_OBJECT_QUERIES`
    reads. ``pg_depend`` deptype 'e' (extension members) is the only exemption."""
    out: dict[str, dict[str, str]] = {}
    for kind, query in _OBJECT_QUERIES.items():
        out[kind] = {ident: definition for ident, definition in conn.execute(query)}
    return out


def objects_diff(expected: dict, actual: dict,
                 labels: tuple[str, str] = ("expected", "actual")) -> list[str]:
    """One entry per object only one side has, or whose definition differs."""
    exp_l, act_l = labels
    out = []
    for kind in sorted(set(expected) | set(actual)):
        a, b = expected.get(kind, {}), actual.get(kind, {})
        for ident in sorted(set(a) | set(b)):
            if ident not in b:
                out.append(f"{kind} {ident}: missing ({exp_l} has it, {act_l} does not)")
            elif ident not in a:
                out.append(f"{kind} {ident}: unexpected ({act_l} has it, {exp_l} does not)")
            elif a[ident] != b[ident]:
                out.append(f"{kind} {ident}: differs: {act_l} has {b[ident]}, {exp_l} "
                           f"expects {a[ident]}")
    return out
