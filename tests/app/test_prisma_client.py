"""The application's Prisma 7 clients against migrated databases (the Node suite).

Each test runs one file of the Node suite in ``tests/app/test/`` with Node's
own test runner, against databases this run prepares:

* ``FORGEA_DSN_APP`` / ``_WORKER`` / ``_READONLY`` / ``_OWNER``: a production
  database migrated by the pack (LOGIN members of forgea_app, forgea_worker,
  forgea_readonly, and the migration owner);
* ``FORGEA_FRESH_DSN_OWNER``: a database built by the chain alone.

The Node dependencies are installed with ``npm ci`` (pinned by
``tests/app/package-lock.json``) when ``node_modules`` is missing or older
than the lockfile, and both clients are generated with the pinned Prisma 7.3
before the first file runs. Node or npm missing is a failure, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests import progress

APP_DIR = Path(__file__).resolve().parent
LOCKFILE = APP_DIR / "package-lock.json"
INSTALLED = APP_DIR / "node_modules" / ".package-lock.json"  # written by npm on every install
NODE_MIN = (20, 19)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: the Prisma client suite needs Node.js >= "
                    f"{NODE_MIN[0]}.{NODE_MIN[1]} and npm", pytrace=False)
    return path


def _run(args: list[str], *, env: dict | None = None, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=APP_DIR, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def node_suite() -> str:
    """Node >= 20.19 present, ``npm ci`` done if needed, both clients generated.

    Runs once per pytest process under a file lock, so xdist workers do not
    install or generate at the same time. Returns the path of ``node``.
    """
    node = _tool("node")
    npm = _tool("npm")
    version = _run([node, "--version"], timeout=30).stdout.strip()
    major, minor = (int(x) for x in re.match(r"v(\d+)\.(\d+)", version).groups())
    if (major, minor) < NODE_MIN:
        pytest.fail(f"Node.js {version} is too old for Prisma 7 (needs >= 20.19)", pytrace=False)
    with open(APP_DIR / ".node-setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not INSTALLED.exists() or INSTALLED.stat().st_mtime < LOCKFILE.stat().st_mtime:
            start = time.monotonic()
            with progress.phase("tests/app: npm ci (Prisma 7 and its clients' dependencies)"):
                res = _run([npm, "ci", "--no-audit", "--no-fund"], timeout=900)
            if res.returncode != 0:
                pytest.fail(f"npm ci failed in {APP_DIR} (exit {res.returncode}):\n"
                            f"{res.stdout}\n{res.stderr}", pytrace=False)
            print(f"npm ci in tests/app: {time.monotonic() - start:.1f} s")
        with progress.phase("tests/app: generating the Prisma clients"):
            res = _run([node, "scripts/generate-clients.mjs"], timeout=600)
        if res.returncode != 0:
            pytest.fail(f"generating the Prisma clients failed (exit {res.returncode}):\n"
                        f"{res.stdout}\n{res.stderr}", pytrace=False)
        print(res.stdout.strip())
    return node


@pytest.fixture
def app_db(prod_db):
    """The database the application's flows run on: production (built by the
    seven real Prisma migrations, with production-like rows), migrated by the pack."""
    return prod_db


def _run_node_file(node: str, test_file: str, env_dbs: dict[str, str]) -> None:
    env = {**os.environ, **env_dbs, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    start = time.monotonic()
    res = _run([node, "--test", "--test-reporter=spec", f"test/{test_file}"], env=env, timeout=840)
    elapsed = time.monotonic() - start
    counts = dict(re.findall(r"^\S*\s*(tests|pass|fail|cancelled|skipped|todo) (\d+)$",
                             res.stdout, flags=re.M))
    print(f"node --test test/{test_file}: {elapsed:.1f} s, {counts}")
    if res.returncode != 0:
        pytest.fail(f"node --test test/{test_file} failed (exit {res.returncode}):\n"
                    f"{res.stdout}\n{res.stderr}", pytrace=False)
    assert counts.get("fail") == "0" and int(counts.get("tests", 0)) > 0, res.stdout
    assert counts.get("skipped") == "0" and counts.get("todo") == "0", res.stdout


def _dsns(testdb, prefix: str = "FORGEA_DSN") -> dict[str, str]:
    return {f"{prefix}_{role.upper()}": testdb.dsn(role)
            for role in ("app", "worker", "readonly", "owner")}


pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def test_pack_schema_validates_and_generates_with_prisma_7_3_and_the_newest_7(node_suite):
    _run_node_file(node_suite, "schema.test.mjs", {})


def test_pack_schema_follows_the_live_catalog(node_suite, app_db, db):
    _run_node_file(node_suite, "catalog.test.mjs",
                   {**_dsns(app_db), "FORGEA_FRESH_DSN_OWNER": db.dsn("owner")})


def test_current_app_client_works_on_the_migrated_database(node_suite, app_db):
    _run_node_file(node_suite, "current-app.test.mjs", _dsns(app_db))


def test_pack_client_reads_new_models_and_calls_the_sql_api(node_suite, app_db):
    _run_node_file(node_suite, "pack-client.test.mjs", _dsns(app_db))


def test_refusals_reach_prisma_with_their_sqlstate(node_suite, app_db):
    _run_node_file(node_suite, "errors.test.mjs", _dsns(app_db))
