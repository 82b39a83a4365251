"""What the applied files create, built from the files themselves.

``harness verify`` must not ask the database whether its code is what the pack
shipped: the owner can replace a guard or a hash function, drop a CHECK, add a
trigger or widen a grant, and every name-based check still passes. So the
reference is built where the live database cannot reach it: a throwaway server of
the same major (``harness.servers``), where the same files (up to the newest one
applied on the live database) run from scratch, and its catalog and privileges are
snapshotted (``harness.catalog``). Snapshots are cached under
``.harness/reference/`` by a digest of the major and the applied files' content.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
from psycopg import sql

from . import catalog

SCHEMA = "public"


def _digest(major: int, files) -> str:
    h = hashlib.sha256(f"reference v1 major {major}\n".encode())
    for f in files:
        h.update(f.id.encode() + b"\0" + f.sql.encode() + b"\0")
    return h.hexdigest()


def snapshot_of(conn) -> dict:
    """The reference shape of a database: its catalog and its privileges."""
    return {"catalog": catalog.snapshot(conn, SCHEMA),
            "privileges": catalog.privileges(conn, SCHEMA)}


def build_on(server_dsn: str, applied, sql_root: Path) -> dict:
    """Build the reference in a scratch database of the server at ``server_dsn``
    (a superuser's maintenance DSN), snapshot it, drop it."""
    from .apply import apply
    name = "forgea_reference_" + hashlib.sha256(server_dsn.encode()).hexdigest()[:8]
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
        try:
            if applied:
                apply(dsn, to=applied[-1].id, sql_root=sql_root, err=_Silent())
            with psycopg.connect(dsn, autocommit=True) as conn:
                return snapshot_of(conn)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def build(major: int, applied, sql_root: Path, cache_dir: Path | None = None) -> dict:
    """The reference for ``applied`` files on ``major``, from the cache or a
    throwaway server of that major."""
    from . import servers
    key = _digest(major, applied)
    path = Path(cache_dir) / f"{key}.json" if cache_dir else None
    if path and path.exists():
        return json.loads(path.read_text())
    cluster = servers.start_throwaway(major)
    try:
        ref = build_on(cluster.dsn(), applied, sql_root)
    finally:
        cluster.destroy()
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ref))
        tmp.replace(path)
    return ref


def differences(reference: dict, live: dict) -> list[str]:
    """Every difference between the reference and the live database, by name."""
    labels = ("applied files", "live")
    return (catalog.diff(reference["catalog"], live["catalog"], labels=labels)
            + catalog.privileges_diff(reference["privileges"], live["privileges"],
                                      labels=labels))


class _Silent:
    def write(self, s):
        return len(s)

    def flush(self):
        pass
