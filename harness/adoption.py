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
