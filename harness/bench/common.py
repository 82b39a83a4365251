"""Shared pieces of the bench: connections, constants, sessions and pushes."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .. import datagen

APP_NAME = "bench-app"
MIGRATION_APP = "harness"
SAMPLE_INTERVAL = 0.02
APP_THREADS = 3
#: the long-running reader of the simulated app: seconds idle in a transaction
#: holding ACCESS SHARE on LabSession, then seconds between two such transactions
READER_HOLD_S = (2.0, 4.0)
READER_GAP_S = (0.5, 1.0)
PUSH_CONNECTIONS = 4
PUSH_SESSIONS_PER_CONN = 50
COMMITS_PER_PUSH = 5
WORKER_COUNTS = (1, 4, 16)
QUEUE_REPEATS = 3   # rounds per side and worker count, alternating; the median is reported

def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _with_db(dsn: str, dbname: str, **extra) -> str:
    d = conninfo_to_dict(dsn)
    d["dbname"] = dbname
    d.update(extra)
    return make_conninfo(**{k: v for k, v in d.items() if v is not None})


def _connect(dsn: str, app: str = "bench", **kw) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, application_name=app, **kw)


# ---------------------------------------------------------------------------
# machine

def machine_info() -> dict:
    info = {"cpu_cores": os.cpu_count() or 0}
    try:
        import psutil
        info["ram_gb"] = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except Exception:
        info["ram_gb"] = 0
    return info


# ---- sessions and pushes ----------------------------------------------------

def _sha() -> str:
    return os.urandom(20).hex()


def _commits(n: int, k: int) -> list[dict]:
    now = datetime.now(timezone.utc).isoformat()
    out = []
    for j in range(n):
        out.append({
            "id": _sha(), "message": f"fix step {k}.{j}", "timestamp": now,
            "author": {"name": f"Dev {k}", "email": f"dev{k}@example.test",
                       "username": f"dev{k}"},
            "added": [f"src/new_{k}_{j}.ts"], "modified": ["src/index.ts", f"src/m{j}.ts"],
            "removed": [],
        })
    return out


def make_sessions(conn, first_pair: int, count: int, tag: str) -> list[dict]:
    """count sessions via create_lab_session on spare bench users (after the app's)."""
    out = []
    for n in range(count):
        p = first_pair + n
        u, l = divmod(p, datagen.LABS)
        user = datagen.spare_user_id(datagen.SPARE_USERS_APP + u)
        url = f"https://github.com/bench{tag}{p}/lab{l}"
        repo_id = 50_000_000 + p
        sid = conn.execute("SELECT create_lab_session(%s, %s, %s, %s, %s)",
                           (user, datagen.lab_id(l), url, repo_id, f"bench-{tag}-{p}")).fetchone()[0]
        out.append({"id": sid, "url": url, "repo_id": repo_id})
    return out


def push(conn, s: dict, commits: list[dict]):
    return conn.execute(
        "SELECT * FROM record_push(%s, %s, %s, %s, %s, %s, %s::jsonb)",
        (str(uuid.uuid4()), s["repo_id"], s["url"], "refs/heads/main", commits[-1]["id"],
         datetime.now(timezone.utc), json.dumps(commits))).fetchall()


def _parallel(n: int, fn) -> float:
    errors: list = []

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t


