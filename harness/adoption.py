"""Adoption: taking over production as the seven Prisma migrations built it.

When ``V0001`` (the ``-- harness: baseline`` file) is not recorded but the
``public`` schema already holds objects (production built by Prisma), the
harness compares the live catalog with the catalog the baseline creates (run in
a scratch schema inside a transaction that is rolled back; no CREATEDB needed).
Identical: the baseline is recorded as applied and *adopted* without running it,
and the rest is applied. Different: refuse, change nothing, list the
differences. An adopted baseline is never rolled back.

Objects that belong to an extension (pg_trgm, citext, pg_stat_statements
installed into ``public``: pg_depend deptype 'e') are not production's schema
and are left out of the comparison (harness.catalog); a mismatch lists the
extensions it saw. Building the baseline in a scratch schema needs the CREATE
privilege on the database: without it the harness refuses (exit 3), naming the
GRANT.
"""

from __future__ import annotations

import random
import re
import string

import psycopg
from psycopg import sql as pgsql

from . import catalog
from .chain import MigrationFile
from .errors import MigrationFailed, RefusedError, describe_pg_error


def _require_create(conn) -> None:
    """Refuse (exit 3), naming the grant, when this role cannot create the scratch schema."""
    me, db, ok = conn.execute(
        "SELECT current_user, current_database(), "
        "pg_catalog.has_database_privilege(current_database(), 'CREATE')").fetchone()
    if not ok:
        raise RefusedError(
            f"cannot compare the live public schema with the baseline: role {me} lacks the "
            f"CREATE privilege on database {db} (the baseline is built in a scratch schema "
            "inside a transaction that is rolled back); nothing was changed",
            details=[f'GRANT CREATE ON DATABASE "{db}" TO "{me}";  -- or run as the '
                     "migration owner, which needs it anyway"])


def expected_baseline_catalog(conn, baseline: MigrationFile) -> dict:
    """Catalog the baseline creates: run it in a scratch schema, snapshot, ROLLBACK."""
    scratch = "_harness_adopt_" + "".join(random.choices(string.ascii_lowercase, k=8))
    _require_create(conn)
    try:
        with conn.transaction() as tx:
            cur = conn.cursor()
            cur.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(scratch)))
            cur.execute(pgsql.SQL("SET LOCAL search_path TO {}").format(
                pgsql.Identifier(scratch)))
            try:
                cur.execute(baseline.sql)
            except psycopg.Error as e:
                line, extra = describe_pg_error(e, file=baseline.relpath(), sql=baseline.sql)
                raise MigrationFailed(
                    "could not build the expected baseline catalog in a scratch schema: "
                    + line, sqlstate=e.sqlstate, details=extra)
            snap = catalog.snapshot(conn, scratch)
            raise psycopg.Rollback(tx)
    except psycopg.Error as e:
        line, extra = describe_pg_error(e)
        raise MigrationFailed("could not build the expected baseline catalog: " + line,
                              details=extra)
    return snap


def adoption_check(conn, baseline: MigrationFile) -> list[str] | None:
    """None: public is empty (run the baseline). []: adoptable. [...]: differences."""
    live = catalog.snapshot(conn, "public")
    if catalog.is_empty(live):
        return None
    expected = expected_baseline_catalog(conn, baseline)
    diffs = catalog.diff(expected, live, labels=("baseline", "production"))
    seen = catalog.extensions(conn)
    if diffs and seen:
        diffs.append("extensions seen (their objects are ignored): " + ", ".join(seen))
    return diffs


# ---------------------------------------------------------------------------
# the right owner

_CREATE_TABLE = re.compile(r'CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:public\.)?"([^"]+)"',
                           re.I)


def baseline_tables(baseline: MigrationFile) -> list[str]:
    """The tables the baseline creates ("User", "LabSession", ...)."""
    return _CREATE_TABLE.findall(baseline.sql)


def baseline_owner(conn, baseline: MigrationFile) -> tuple[str | None, str]:
    """(the role owning the baseline's tables present in public, or None when there
    are none; the current role). Several owners: refused (exit 3)."""
    rows = conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(c.relowner), "
        "string_agg(quote_ident(c.relname), ', ' ORDER BY c.relname) "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s) "
        "GROUP BY 1 ORDER BY 1", (baseline_tables(baseline),)).fetchall()
    me = conn.execute("SELECT current_user").fetchone()[0]
    if len(rows) > 1:
        raise RefusedError(
            "refusing to proceed: the baseline's tables are owned by several roles; every "
            "object the pack creates must have one owner; nothing was changed",
            details=[f"{owner}: {tables}" for owner, tables in rows]
            + ["ALTER TABLE ... OWNER TO one role (as a superuser), then run as that role"])
    return (rows[0][0] if rows else None), me


def check_owner(conn, baseline: MigrationFile | None, say, *, set_role: bool = True
                ) -> str | None:
    """Before the first change: the role must own the baseline's tables, or be a
    member of their owner, which it then becomes (``SET ROLE``, said on ``say``),
    so that every object the pack creates is owned by the tables' owner. Else
    refused (exit 3) naming the role to use. Returns the role set, if any."""
    if baseline is None:
        return None
    owner, me = baseline_owner(conn, baseline)
    if owner is None or owner == me:
        return None
    member = conn.execute("SELECT pg_catalog.pg_has_role(current_user, %s, 'MEMBER')",
                          (owner,)).fetchone()[0]
    refusal = RefusedError(
        f'refusing to proceed: the role {me} does not own the baseline\'s tables ("LabSession" '
        f"and the others are owned by {owner}) and cannot SET ROLE {owner}; objects it "
        "created would have the wrong owner; nothing was changed",
        details=[f"run as {owner} (--target with user={owner}), or, as a superuser: "
                 f'GRANT "{owner}" TO "{me}";'])
    if not member:
        raise refusal
    if set_role:
        try:
            conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(owner)))
        except psycopg.errors.InsufficientPrivilege:
            raise refusal from None
        say(f"running as {owner} (SET ROLE from {me}): {owner} owns the baseline's tables, "
            "so every object created is owned by it")
    return owner
