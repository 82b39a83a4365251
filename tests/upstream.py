"""Production as Prisma built it: the seven real migrations in ``../shared/upstream``.

The facts of production are those files, not the pack's baseline, so every test
that needs "a production database" builds it here, the way ``prisma migrate
deploy`` did (``../shared/upstream/README.md``):

* ``_prisma_migrations`` is created with Prisma's own definition;
* each ``migration.sql`` runs in folder-name order, in a transaction of its own,
  and is recorded with the lowercase hex SHA-256 of its bytes as ``checksum``,
  the folder name as ``migration_name``, ``applied_steps_count`` = 1 and
  ``finished_at`` set (``logs`` and ``rolled_back_at`` stay NULL).

The files are read at run time and never copied into the pack.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = REPO_ROOT.parent / "shared" / "upstream"
MIGRATIONS = UPSTREAM / "prisma" / "migrations"

# Prisma's definition of its bookkeeping table (schema engine, PostgreSQL).
PRISMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)"""


def migration_files() -> list[Path]:
    """The upstream ``migration.sql`` files in the order Prisma applies them."""
    files = sorted(MIGRATIONS.glob("*/migration.sql"), key=lambda p: p.parent.name)
    if len(files) != 7:
        raise FileNotFoundError(
            f"expected the seven Prisma migrations under {MIGRATIONS}, found {len(files)}")
    return files


def build_production(conn) -> list[tuple[str, str]]:
    """Run the seven migrations on ``conn`` (autocommit psycopg connection).

    Returns ``[(migration_name, checksum), ...]`` as recorded.
    """
    conn.execute(PRISMA_MIGRATIONS_DDL)
    recorded = []
    for path in migration_files():
        raw = path.read_bytes()
        name, checksum = path.parent.name, hashlib.sha256(raw).hexdigest()
        with conn.transaction():
            row_id = str(uuid.uuid4())
            conn.execute(
                'INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name") '
                "VALUES (%s, %s, %s)", (row_id, checksum, name))
            conn.execute(raw.decode("utf-8"))
            conn.execute(
                'UPDATE "_prisma_migrations" SET "finished_at" = now(), '
                '"applied_steps_count" = 1 WHERE "id" = %s', (row_id,))
        recorded.append((name, checksum))
    return recorded
