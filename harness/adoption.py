"""Adoption: taking over production as the seven Prisma migrations built it.

When ``V0001`` (the ``-- harness: baseline`` file) is not recorded but the
``public`` schema already holds objects (production built by Prisma), the
harness compares the live catalog with the catalog the baseline creates (run in
a scratch schema inside a transaction that is rolled back; no CREATEDB needed).
Identical: the baseline is recorded as applied and *adopted* without running it,
and the rest is applied. Different: refuse, change nothing, list the
differences. An adopted baseline is never rolled back.
"""

from __future__ import annotations

import random
import string

import psycopg
from psycopg import sql as pgsql

from . import catalog
from .chain import MigrationFile
from .errors import MigrationFailed, describe_pg_error


def expected_baseline_catalog(conn, baseline: MigrationFile) -> dict:
    """Catalog the baseline creates: run it in a scratch schema, snapshot, ROLLBACK."""
    scratch = "_harness_adopt_" + "".join(random.choices(string.ascii_lowercase, k=8))
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
    return catalog.diff(expected, live, labels=("baseline", "production"))
