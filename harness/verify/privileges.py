"""The privilege model of CONTRACT section 6, compared with the explicit
EXPECTED_* tables: no extra grant to anyone, no missing grant, the forbidden
privileges absent even through role membership, nothing executable by PUBLIC,
every SECURITY DEFINER function with a pinned search_path and owned by the
owner of the tables. Objects that belong to an extension (pg_depend deptype
'e': pg_trgm, citext, pg_stat_statements installed into public) are not the
pack's and are ignored by every check; :func:`extensions` lists them."""

from __future__ import annotations

from ..bookkeeping import BOOKKEEPING_SCHEMA, READER_ROLE, READER_TABLES
from ..catalog import extensions as _extensions
from ..catalog import not_extension_member as _not_ext
from .queries import exists as _exists
from .queries import rows as _rows

GROUP_ROLES = ("forgea_app", "forgea_worker", "forgea_readonly")

# --------------------------------------------------------------------------
# the expected privilege model (CONTRACT section 6). Any grant on an object of
# schema public or forgea_archive to anyone but the object's owner that is not
# listed here is a failure, and so is a listed grant that is missing (for the
# objects that exist).

_APP_AUTH = ("SELECT", "INSERT", "UPDATE", "DELETE")
_LEDGER_READS = ("LabVersion", "VerificationAttempt", "GitHubRepoMapping", "LabAttempt",
                 "GitHubPushDelivery", "VerificationJob")
_WORKER_READS = ("Lab", "LabSession") + _LEDGER_READS
#: everything but the secrets (Account/Session/AuthSession columns are granted
#: column by column; VerificationToken not at all)
_READONLY_READS = ("User", "AuthIdentity", "Lab", "LabSession", "VerificationLog",
                   "ResumeBullet", "AuditLog", "LedgerCheckpoint") + _LEDGER_READS

EXPECTED_TABLE_PRIVILEGES: dict[str, dict[str, frozenset[str]]] = {
    "forgea_app": {
        "User": frozenset(_APP_AUTH),
        "Account": frozenset(_APP_AUTH),
        "Session": frozenset(_APP_AUTH),
        "VerificationToken": frozenset(_APP_AUTH),
        "AuthIdentity": frozenset(_APP_AUTH),
        "AuthSession": frozenset(_APP_AUTH),
        # UPDATE only on the columns the app edits (no table-level UPDATE, so no
        # LOCK TABLE above ROW EXCLUSIVE): EXPECTED_COLUMN_PRIVILEGES
        "Lab": frozenset({"SELECT", "INSERT"}),
        # UPDATE only on the columns the app writes: EXPECTED_COLUMN_PRIVILEGES
        "LabSession": frozenset({"SELECT", "INSERT"}),
        # INSERT stays so that the freeze trigger answers FA001 with its reason
        "VerificationLog": frozenset({"SELECT", "INSERT"}),
        "ResumeBullet": frozenset({"SELECT", "INSERT"}),
        "AuditLog": frozenset({"SELECT", "INSERT"}),
        "LabVersion": frozenset({"SELECT"}),
        "VerificationAttempt": frozenset({"SELECT"}),
        "GitHubRepoMapping": frozenset({"SELECT"}),
        "LabAttempt": frozenset({"SELECT"}),
        "GitHubPushDelivery": frozenset({"SELECT"}),
        "VerificationJob": frozenset({"SELECT"}),
    },
    "forgea_worker": dict.fromkeys(_WORKER_READS, frozenset({"SELECT"})),
    "forgea_readonly": {**dict.fromkeys(_READONLY_READS, frozenset({"SELECT"})),
                        # what `harness status` and `verify` read (harness.bookkeeping)
                        **{f"{BOOKKEEPING_SCHEMA}.{t}": frozenset({"SELECT"})
                           for t in READER_TABLES}},
    "PUBLIC": {},
}

EXPECTED_COLUMN_PRIVILEGES: dict[str, dict[str, dict[str, frozenset[str]]]] = {
    "forgea_app": {
        # what transitionLabSession() writes (Prisma updateMany sends only these)
        "LabSession": {c: frozenset({"UPDATE"}) for c in ("status", "lastActivityAt")},
        # the content columns an admin edits (Prisma lab.update sends only these)
        "Lab": {c: frozenset({"UPDATE"}) for c in (
            "title", "epic", "failureClass", "sourceGithubIssueUrl", "repoVersion",
            "baseRepoUrl", "constraints")},
    },
    "forgea_readonly": {
        "Account": {c: frozenset({"SELECT"}) for c in (
            "id", "userId", "type", "provider", "providerAccountId", "expires_at",
            "token_type", "scope", "session_state")},
        "Session": {c: frozenset({"SELECT"}) for c in ("id", "userId", "expires")},
        "AuthSession": {c: frozenset({"SELECT"}) for c in ("id", "userId", "expires")},
    },
}

#: function name -> roles with EXECUTE (PUBLIC never; every other function of
#: the pack -- trigger functions, internal helpers, procedures -- owner only)
EXPECTED_FUNCTION_EXECUTE: dict[str, frozenset[str]] = {
    "canonical_repo_url": frozenset(GROUP_ROLES),
    "lab_status_is_active": frozenset(GROUP_ROLES),
    "git_branch_name_valid": frozenset(GROUP_ROLES),
    "lab_attempt_row_hash": frozenset({"forgea_readonly", "forgea_worker"}),
    "verify_lab_attempt_chain": frozenset({"forgea_readonly", "forgea_worker"}),
    "list_unmapped_lab_sessions": frozenset({"forgea_app", "forgea_readonly"}),
    "create_lab_session": frozenset({"forgea_app"}),
    "resolve_lab_session": frozenset({"forgea_app", "forgea_worker"}),
    "record_push": frozenset({"forgea_app"}),
    "enqueue_verification_job": frozenset({"forgea_app"}),
    "claim_verification_job": frozenset({"forgea_worker"}),
    "complete_verification_job": frozenset({"forgea_worker"}),
    "requeue_expired_verification_jobs": frozenset({"forgea_worker"}),
}

#: tables no role but the owner may UPDATE, DELETE or TRUNCATE (CONTRACT 6)
APPEND_ONLY_TABLES = ("LabVersion", "VerificationAttempt", "VerificationLog",
                      "LabAttempt", "AuditLog", "ResumeBullet", "GitHubPushDelivery",
                      "LedgerCheckpoint")
#: tables no role but the owner may write at all (API functions only)
API_ONLY_TABLES = ("VerificationJob", "GitHubRepoMapping")
#: secret columns forgea_readonly must not read
SECRET_COLUMNS = {
    "Account": ("refresh_token", "access_token", "id_token"),
    "Session": ("sessionToken",),
    "AuthSession": ("sessionToken",),
    "VerificationToken": ("identifier", "token", "expires"),
}


def extensions(c, ctx) -> None:
    """Which extensions are installed: their objects are ignored by every check."""
    found = _extensions(ctx.conn)
    if found:
        c.info("extensions", "installed; their objects are not the pack's and every "
                             "check ignores them", found, len(found))


def role_attributes(c, ctx) -> None:
    """The group roles are plain NOLOGIN roles that inherit no other role."""
    conn = ctx.conn
    rows = {r[0]: r[1:] for r in _rows(conn, """
        SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin
        FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)""", (list(GROUP_ROLES),))}
    for r in GROUP_ROLES:
        if r not in rows:
            c.fail(r, "role missing")
            continue
        sup, crole, cdb, bypass, login = rows[r]
        bad = [n for n, v in (("SUPERUSER", sup), ("CREATEROLE", crole), ("CREATEDB", cdb),
                              ("BYPASSRLS", bypass), ("LOGIN", login)) if v]
        if bad:
            c.fail(r, "has " + ", ".join(bad) + " (group roles are plain NOLOGIN)")
    for member, group in _rows(conn, """
        SELECT pg_catalog.pg_get_userbyid(m.member), pg_catalog.pg_get_userbyid(m.roleid)
        FROM pg_catalog.pg_auth_members m
        WHERE pg_catalog.pg_get_userbyid(m.member) = ANY(%s)""", (list(GROUP_ROLES),)):
        c.fail(member, f"is a member of {group}: group roles must not inherit other roles")


def ownership(c, ctx) -> None:
    """Every table, view, sequence and function of public is owned by the table owner."""
    conn, owner = ctx.conn, ctx.owner
    if owner is None:
        c.info("public", "no LabSession table: nothing to compare")
        return
    others = [f"{k} {n} (owner {o})" for k, n, o in _rows(conn, f"""
        SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence'
                              WHEN 'm' THEN 'matview' ELSE c.relkind::text END,
               c.relname, pg_catalog.pg_get_userbyid(c.relowner)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND pg_catalog.pg_get_userbyid(c.relowner) <> %s
          AND {_not_ext('pg_class', 'c.oid')} ORDER BY 2""", (owner,))]
    others += [f"function {n} (owner {o})" for n, o in _rows(conn, """
        SELECT p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner)
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_catalog.pg_get_userbyid(p.proowner) <> %s
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = p.oid
                          AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e')
        ORDER BY 1""", (owner,))]
    if others:
        c.fail("public", f"objects not owned by the table owner {owner}", others, len(others))


def _grantee_sql(col: str) -> str:
    return f"CASE WHEN {col} = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid({col}) END"


def table_privileges(c, ctx) -> None:
    """Table grants are exactly EXPECTED_TABLE_PRIVILEGES; no group role can change
    an append-only or API-only table, even through PUBLIC or membership."""
    conn = ctx.conn
    rows = _rows(conn, f"""
        SELECT n.nspname, c.relname, {_grantee_sql('a.grantee')}, a.privilege_type
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
        WHERE n.nspname IN ('public', 'forgea_archive', %s)
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND a.grantee <> c.relowner AND {_not_ext('pg_class', 'c.oid')}""",
                 (BOOKKEEPING_SCHEMA,))
    actual: dict[tuple[str, str], set[str]] = {}
    for nsp, rel, grantee, priv in rows:
        name = rel if nsp == "public" else f"{nsp}.{rel}"
        actual.setdefault((grantee, name), set()).add(priv)
    present = {r[0] for r in _rows(conn, """
        SELECT c.relname FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')""")}
    for (grantee, rel), privs in sorted(actual.items()):
        allowed = EXPECTED_TABLE_PRIVILEGES.get(grantee, {}).get(rel, frozenset())
        extra = sorted(privs - allowed)
        if extra:
            c.fail(f'"{rel}" to {grantee}', "extra grant: " + ", ".join(extra))
    for grantee, tables in EXPECTED_TABLE_PRIVILEGES.items():
        for rel, privs in tables.items():
            if rel not in present:
                continue
            missing = sorted(privs - actual.get((grantee, rel), set()))
            if missing:
                c.fail(f'"{rel}" to {grantee}', "missing grant: " + ", ".join(missing))
    # effective privileges (through PUBLIC and role membership as well)
    for role in GROUP_ROLES:
        for rel in APPEND_ONLY_TABLES + API_ONLY_TABLES:
            if rel not in present:
                continue
            ops = ("UPDATE", "DELETE", "TRUNCATE") + (("INSERT",) if rel in API_ONLY_TABLES
                                                      else ())
            for op in ops:
                if conn.execute("SELECT pg_catalog.has_table_privilege(%s, %s, %s)",
                                (role, f'public."{rel}"', op)).fetchone()[0]:
                    c.fail(f'"{rel}"', f"{role} can {op} it (effective privilege)")


def column_privileges(c, ctx) -> None:
    """Column grants are exactly EXPECTED_COLUMN_PRIVILEGES; forgea_readonly reads no secret."""
    conn = ctx.conn
    rows = _rows(conn, f"""
        SELECT c.relname, a.attname, {_grantee_sql('x.grantee')}, x.privilege_type
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) x
        WHERE n.nspname IN ('public', 'forgea_archive', %s) AND a.attnum > 0
          AND NOT a.attisdropped AND x.grantee <> c.relowner
          AND {_not_ext('pg_class', 'c.oid')}""", (BOOKKEEPING_SCHEMA,))
    actual: dict[tuple[str, str, str], set[str]] = {}
    for rel, col, grantee, priv in rows:
        actual.setdefault((grantee, rel, col), set()).add(priv)
    for (grantee, rel, col), privs in sorted(actual.items()):
        allowed = EXPECTED_COLUMN_PRIVILEGES.get(grantee, {}).get(rel, {}).get(col, frozenset())
        extra = sorted(privs - allowed)
        if extra:
            c.fail(f'"{rel}"."{col}" to {grantee}', "extra column grant: " + ", ".join(extra))
    for grantee, tables in EXPECTED_COLUMN_PRIVILEGES.items():
        for rel, cols in tables.items():
            if not _exists(conn, rel):
                continue
            for col, privs in cols.items():
                missing = sorted(privs - actual.get((grantee, rel, col), set()))
                if missing:
                    c.fail(f'"{rel}"."{col}" to {grantee}',
                           "missing column grant: " + ", ".join(missing))
    for rel, secret in SECRET_COLUMNS.items():
        if not _exists(conn, rel):
            continue
        for col in secret:
            if conn.execute("SELECT pg_catalog.has_column_privilege('forgea_readonly', %s, %s, "
                            "'SELECT')", (f'public."{rel}"', col)).fetchone()[0]:
                c.fail(f'"{rel}"."{col}"', "forgea_readonly can read this secret")


def function_privileges(c, ctx) -> None:
    """EXECUTE is granted exactly as EXPECTED_FUNCTION_EXECUTE; never to PUBLIC."""
    conn = ctx.conn
    rows = _rows(conn, f"""
        SELECT p.proname, p.oid::regprocedure::text, {_grantee_sql('a.grantee')}
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        CROSS JOIN LATERAL pg_catalog.aclexplode(
            coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
        WHERE n.nspname IN ('public', 'forgea_archive') AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = p.oid
                          AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e')""")
    actual: dict[tuple[str, str], set[str]] = {}
    for name, sig, grantee in rows:
        actual.setdefault((name, sig), set()).add(grantee)
        if grantee not in EXPECTED_FUNCTION_EXECUTE.get(name, frozenset()):
            c.fail(f"function {sig}", f"EXECUTE granted to {grantee}"
                   + (" (executable by everyone)" if grantee == "PUBLIC" else ""))
    sigs = {r[0]: r[1] for r in _rows(conn, """
        SELECT p.proname, p.oid::regprocedure::text FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proname = ANY(%s)""",
                                      (list(EXPECTED_FUNCTION_EXECUTE),))}
    for name, roles in EXPECTED_FUNCTION_EXECUTE.items():
        if name not in sigs:
            continue
        got = actual.get((name, sigs[name]), set())
        missing = sorted(roles - got)
        if missing:
            c.fail(f"function {sigs[name]}", "missing EXECUTE for " + ", ".join(missing))


def schema_privileges(c, ctx) -> None:
    """No one but the owner creates in public, the archive or the bookkeeping schema,
    nor creates schemas; of the group roles only forgea_readonly uses the
    bookkeeping schema (USAGE, to read what is applied), and no other one can."""
    conn = ctx.conn
    for nsp, grantee, priv in _rows(conn, f"""
        SELECT n.nspname, {_grantee_sql('a.grantee')}, a.privilege_type
        FROM pg_catalog.pg_namespace n
        CROSS JOIN LATERAL pg_catalog.aclexplode(
            coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
        WHERE n.nspname IN ('public', 'forgea_archive', %s) AND a.grantee <> n.nspowner
        ORDER BY 1, 2, 3""", (BOOKKEEPING_SCHEMA,)):
        # the rollback archive is the owner's alone; the bookkeeping too, but for
        # the reader role's USAGE
        if nsp == BOOKKEEPING_SCHEMA and (grantee, priv) == (READER_ROLE, "USAGE"):
            continue
        if priv == "CREATE" or nsp in ("forgea_archive", BOOKKEEPING_SCHEMA):
            c.fail(f"schema {nsp}", f"{priv} granted to {grantee}")
    for role in ("public",) + GROUP_ROLES:
        who = "PUBLIC" if role == "public" else role
        if role == "public":
            q = ("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database d CROSS JOIN LATERAL "
                 "pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', "
                 "d.datdba))) a WHERE d.datname = current_database() AND a.grantee = 0 "
                 "AND a.privilege_type = 'CREATE')")
            has = conn.execute(q).fetchone()[0]
        else:
            has = conn.execute("SELECT pg_catalog.has_database_privilege(%s, "
                               "current_database(), 'CREATE')", (role,)).fetchone()[0]
        if has:
            c.fail(f"database {conn.info.dbname}", f"{who} can CREATE schemas")
    for role in GROUP_ROLES:
        if conn.execute("SELECT pg_catalog.has_schema_privilege(%s, 'public', 'CREATE')",
                        (role,)).fetchone()[0]:
            c.fail("schema public", f"{role} can CREATE objects (effective privilege)")
        uses = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL AND "
                            "pg_catalog.has_schema_privilege(%s, %s, 'USAGE')",
                            (BOOKKEEPING_SCHEMA, role, BOOKKEEPING_SCHEMA)).fetchone()[0]
        if uses and role != READER_ROLE:
            c.fail(f"schema {BOOKKEEPING_SCHEMA}",
                   f"{role} can use the harness's bookkeeping schema (effective privilege)")
        if role == READER_ROLE and not uses and conn.execute(
                "SELECT to_regnamespace(%s) IS NOT NULL", (BOOKKEEPING_SCHEMA,)).fetchone()[0]:
            c.info(f"schema {BOOKKEEPING_SCHEMA}",
                   f"{READER_ROLE} cannot read the bookkeeping, so `harness status` and "
                   "`verify` do not run as that role; the next `harness apply` grants it")


def security_definer(c, ctx) -> None:
    """Every SECURITY DEFINER function pins search_path (pg_catalog first, pg_temp
    last, nothing else but public) and is owned by the table owner."""
    conn, owner = ctx.conn, ctx.owner
    for sig, fowner, config in _rows(conn, f"""
        SELECT p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner), p.proconfig
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'forgea_archive') AND p.prosecdef
          AND {_not_ext('pg_proc', 'p.oid')} ORDER BY 1"""):
        path = None
        for item in config or []:
            if item.startswith("search_path="):
                path = [s.strip().strip('"') for s in item.split("=", 1)[1].split(",")]
        obj = f"function {sig}"
        if path is None:
            c.fail(obj, "SECURITY DEFINER without a pinned search_path (proconfig)")
        else:
            if path[0] != "pg_catalog":
                c.fail(obj, f"search_path {', '.join(path)} does not start with pg_catalog")
            if path[-1] != "pg_temp":
                c.fail(obj, f"search_path {', '.join(path)} does not end with pg_temp "
                            "(pg_temp is otherwise searched first for relations)")
            bad = [s for s in path if s not in ("pg_catalog", "public", "pg_temp")]
            if bad:
                c.fail(obj, "search_path names other schemas: " + ", ".join(bad))
        if owner and fowner != owner:
            c.fail(obj, f"owned by {fowner}, not by the table owner {owner}")


#: the settings every LOGIN member of a group role needs for itself (the group's
#: ALTER ROLE ... IN DATABASE settings of V0002 apply only to a session that logs
#: in AS the group role, never to its members)
LOGIN_TIMEOUTS = ("lock_timeout", "idle_in_transaction_session_timeout")


def _zero(value: str) -> bool:
    """Whether a timeout setting's text means "no timeout" (0 in any unit)."""
    return value.strip().strip("'\"").rstrip("smindhu ").strip() in ("", "0")


def login_role_timeouts(c, ctx) -> None:
    """Every LOGIN member (direct or through another role) of forgea_app,
    forgea_worker or forgea_readonly has lock_timeout and
    idle_in_transaction_session_timeout of its own in this database (ALTER ROLE
    ... IN DATABASE, or for all databases), or the database / the server
    configuration sets them for everyone. A warning, never a failure: without
    them an idle app login can hold a row lock indefinitely (docs/dba.md,
    "The rollout with the application")."""
    conn = ctx.conn
    # what the server configuration gives everyone: only a value whose source is
    # the configuration file or the command line (a role's or database's own
    # setting of this verifying session says nothing about the members)
    server = {n: v for n, v, src in _rows(conn, """
        SELECT name, setting, source FROM pg_catalog.pg_settings WHERE name = ANY(%s)""",
        (list(LOGIN_TIMEOUTS),))
        if src in ("configuration file", "command line")}
    # PostgreSQL 16+: a membership that can neither SET ROLE nor inherit (what
    # CREATEROLE gives the creator of a role: ADMIN only) does not act as the group
    acts = ("AND (a.set_option OR a.inherit_option)"
            if conn.info.server_version >= 160000 else "")
    members = _rows(conn, f"""
        WITH RECURSIVE m (member, via) AS (
            SELECT a.member, pg_catalog.pg_get_userbyid(a.roleid)
            FROM pg_catalog.pg_auth_members a
            WHERE pg_catalog.pg_get_userbyid(a.roleid) = ANY(%s) {acts}
            UNION
            SELECT a.member, m.via FROM pg_catalog.pg_auth_members a
            JOIN m ON a.roleid = m.member {acts}
        )
        SELECT r.rolname, pg_catalog.string_agg(DISTINCT m.via, ', ' ORDER BY m.via),
            -- in PostgreSQL's order of precedence: the role in this database, the
            -- role in every database, this database for every role
            ARRAY(SELECT pg_catalog.array_to_string(s.setconfig, E'\\n')
                  FROM pg_catalog.pg_db_role_setting s, (VALUES (1, r.oid, dbo.oid),
                      (2, r.oid, 0::oid), (3, 0::oid, dbo.oid)) AS k (prio, rl, dbid)
                  WHERE s.setrole = k.rl AND s.setdatabase = k.dbid ORDER BY k.prio)
        FROM m JOIN pg_catalog.pg_roles r ON r.oid = m.member,
            (SELECT d.oid FROM pg_catalog.pg_database d
             WHERE d.datname = pg_catalog.current_database()) AS dbo
        WHERE r.rolcanlogin AND NOT r.rolsuper
        GROUP BY r.oid, r.rolname, dbo.oid ORDER BY r.rolname""", (list(GROUP_ROLES),))
    for login, via, levels in members:
        effective = dict(server)
        for level in reversed(levels or []):      # a more specific level wins
            for item in level.split("\n"):
                name, _, value = item.partition("=")
                if name in LOGIN_TIMEOUTS:
                    effective[name] = value
        missing = [n for n in LOGIN_TIMEOUTS if _zero(effective.get(n, "0"))]
        if missing:
            c.warn(login, f"LOGIN member of {via} without {' and '.join(missing)} in this "
                          "database: the group role's settings do not apply to its "
                          "members, so its sessions can hold locks and idle transactions "
                          "indefinitely; run ALTER ROLE ... IN DATABASE ... SET for it "
                          "(docs/dba.md, \"The rollout with the application\")")


#: lc_messages values under which the server writes its call-stack lines
#: ("PL/pgSQL function ... line N at SQL statement") in English, which is what
#: transition_api_caller() reads
_ENGLISH_MESSAGES = ("", "c", "posix")


def _english(value: str) -> bool:
    v = value.strip().strip("'\"").lower()
    return v in _ENGLISH_MESSAGES or v.startswith(("c.", "en_", "en.", "en@")) or v == "en"


def message_language(c, ctx) -> None:
    """The server writes its messages in English for the roles that move jobs:
    lc_messages of the server configuration, of this database, and of every LOGIN
    member of forgea_worker or forgea_app (their own settings, here or in every
    database). transition_api_caller() (V0007) reads the call stack's text, which
    a translated lc_messages changes ("PL/pgSQL-Funktion ..."): every claim,
    completion and requeue would then be refused (FQ001). It fails closed (no
    pass is forged) but stops the queue, so it is a warning; only a superuser can
    set lc_messages."""
    conn = ctx.conn
    values = _rows(conn, """
        SELECT 'the server configuration', setting FROM pg_catalog.pg_settings
        WHERE name = 'lc_messages' AND source IN ('configuration file', 'command line',
                                                  'default', 'environment variable')
        UNION ALL
        SELECT CASE WHEN s.setrole = 0 AND s.setdatabase = 0 THEN 'every role'
                    WHEN s.setrole = 0 THEN 'database ' || pg_catalog.current_database()
                    ELSE 'role ' || pg_catalog.pg_get_userbyid(s.setrole) END,
               pg_catalog.split_part(x.item, '=', 2)
        FROM pg_catalog.pg_db_role_setting s
        CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) AS x (item)
        WHERE pg_catalog.split_part(x.item, '=', 1) = 'lc_messages'
          AND (s.setdatabase = 0 OR s.setdatabase = (
                SELECT d.oid FROM pg_catalog.pg_database d
                WHERE d.datname = pg_catalog.current_database()))
          AND (s.setrole = 0 OR EXISTS (
                SELECT 1 FROM pg_catalog.pg_roles g
                WHERE g.rolname IN ('forgea_worker', 'forgea_app')
                  AND pg_catalog.pg_has_role(s.setrole, g.oid, 'MEMBER')))
        ORDER BY 1""")
    for where, value in values:
        if not _english(value):
            c.warn(where, f"lc_messages = {value!r}: the server's call-stack lines are "
                          "then translated, and transition_api_caller() (which reads them "
                          "in English) refuses every claim, completion and requeue "
                          "(FQ001); set lc_messages to 'C' or an English locale "
                          "(docs/security.md, \"Who authorises a transition\")")

# --------------------------------------------------------------------------
# driver
