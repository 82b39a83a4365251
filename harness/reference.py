"""What the applied files create, built from the files themselves.

``harness verify`` must not ask the database whether its code is what the pack
shipped: the owner can replace a guard or a hash function, drop a CHECK, add a
trigger or widen a grant, and every name-based check still passes. So the
reference is built where the live database cannot reach it: a throwaway server of
the same major (``harness.servers``), where the same files (up to the newest one
applied on the live database) run from scratch, and its catalog and privileges are
snapshotted (``harness.catalog``). Snapshots are cached by a digest of the major
and the applied files' content (:func:`cache_dir`): under ``$HARNESS_CACHE_DIR``
when set, else ``.harness/reference/`` of the checkout, else (that one not
writable) a private directory under the system's temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from . import catalog
from .errors import LocalProblem

SCHEMA = "public"
#: the environment variable that sets where cached snapshots are kept
CACHE_ENV = "HARNESS_CACHE_DIR"


def _private_dir(path: Path) -> bool:
    """Whether ``path`` is (or could be made) a directory we own, no one else may
    write to, and we can write in. A cached reference decides what verify accepts,
    so a directory another user can plant files in is never used."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.lstat()
        if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return False
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def cache_dir() -> Path:
    """Where reference snapshots are cached: ``$HARNESS_CACHE_DIR/reference`` when
    set (LocalProblem when it cannot be used: the operator asked for it), else
    ``<checkout>/.harness/reference``, else ``<tmp>/harness-cache-<uid>/reference``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        path = Path(env) / "reference"
        if not _private_dir(path):
            raise LocalProblem(f"could not check: the cache directory {path} "
                               f"(${CACHE_ENV}) is not a writable directory of this user "
                               "that no one else may write to")
        return path
    from .chain import find_repo_root
    try:
        default = find_repo_root() / ".harness" / "reference"
    except OSError:
        default = None
    if default is not None and _private_dir(default):
        return default
    fallback = Path(tempfile.gettempdir()) / f"harness-cache-{os.geteuid()}" / "reference"
    if _private_dir(fallback.parent) and _private_dir(fallback):
        return fallback
    raise LocalProblem(f"could not check: no usable cache directory ({default} and "
                       f"{fallback} are not writable, private directories); set "
                       f"${CACHE_ENV}")


def _digest(major: int, files) -> str:
    h = hashlib.sha256(f"reference v2 major {major}\n".encode())
    for f in files:
        h.update(f.id.encode() + b"\0" + f.sql.encode() + b"\0")
    return h.hexdigest()


def snapshot_of(conn) -> dict:
    """The reference shape of a database: the catalog of public, its privileges, and
    every other object of the database (catalog.objects: operators, casts,
    aggregates, objects of other schemas, ...), extension members left out."""
    return {"catalog": catalog.snapshot(conn, SCHEMA),
            "privileges": catalog.privileges(conn, SCHEMA),
            "objects": catalog.objects(conn)}


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
        try:
            ref = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(ref, dict) and {"catalog", "privileges", "objects"} <= set(ref):
                return ref
        except (OSError, ValueError):
            pass    # unreadable or half-written: build it again
    try:
        cluster = servers.start_throwaway(major)
    except (servers.ServerNotFound, servers.ServerError, OSError) as e:
        raise LocalProblem(f"could not check: no scratch PostgreSQL {major} server to "
                           f"build the reference on: {e}".strip()) from e
    try:
        ref = build_on(cluster.dsn(), applied, sql_root)
    finally:
        cluster.destroy()
    if path:
        try:    # a cache that cannot be written only costs the next run a rebuild
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(ref), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass
    return ref


def differences(reference: dict, live: dict) -> list[str]:
    """Every difference between the reference and the live database, by name."""
    labels = ("applied files", "live")
    return (catalog.diff(reference["catalog"], live["catalog"], labels=labels)
            + catalog.privileges_diff(reference["privileges"], live["privileges"],
                                      labels=labels)
            + catalog.objects_diff(reference.get("objects", {}), live.get("objects", {}),
                                   labels=labels))


class _Silent:
    def write(self, s):
        return len(s)

    def flush(self):
        pass
