"""The server launcher: real clusters, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from harness import servers


def test_session_cluster_reports_requested_major(pg_cluster, pg_version):
    assert pg_cluster.version == pg_version
    assert pg_cluster.server_version_num // 10000 == pg_version
    assert servers.binary_major_version(pg_cluster.bin_dir) == pg_version


def test_session_cluster_listens_on_loopback_with_dsn(pg_cluster):
    dsn = pg_cluster.dsn()
    assert dsn == f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/postgres"
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_user, inet_server_addr()::text, current_setting('max_connections')"
        ).fetchone()
    assert row[0] == "postgres"
    assert row[1].startswith("127.0.0.1")
    assert int(row[2]) >= 200


def test_server_never_runs_as_root(pg_cluster):
    pid = int((pg_cluster.datadir / "postmaster.pid").read_text().split("\n")[0])
    user = psutil.Process(pid).username()
    assert user != "root"
    if os.geteuid() == 0:
        assert user == servers.SYSTEM_USER


def test_two_throwaways_get_different_ports_and_dirs(pg_version, scratch_dir):
    a = servers.start_throwaway(pg_version, base_dir=scratch_dir)
    try:
        b = servers.start_throwaway(pg_version, base_dir=scratch_dir)
        try:
            assert a.port != b.port
            assert a.datadir != b.datadir
            assert a.is_running() and b.is_running()
            assert a.server_version_num // 10000 == pg_version
        finally:
            b.destroy()
        assert not b.datadir.exists()
    finally:
        a.destroy()
    assert not a.is_running()


def test_stop_start_and_immediate_restart(pg_version, scratch_dir):
    c = servers.start_throwaway(pg_version, base_dir=scratch_dir)
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE kept")
        c.pg_ctl("restart", "-m", "immediate", "-w")
        assert c.is_running()
        c.stop()
        assert not c.is_running()
        c.start()
        with psycopg.connect(c.dsn(dbname="kept")) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "kept"
        assert (c.datadir / "server.log").exists()
    finally:
        c.destroy()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_reap_stale_removes_registry_entry_of_dead_owner(scratch_dir):
    entry = scratch_dir / f"{_dead_pid()}-1"
    (entry / "data").mkdir(parents=True)
    (entry / "owner.json").write_text(json.dumps({"pid": _dead_pid(), "started": 0.0,
                                                  "version": 18, "bin_dir": "/nonexistent"}))
    alive = scratch_dir / f"{os.getpid()}-999"
    alive.mkdir()
    (alive / "owner.json").write_text(json.dumps({
        "pid": os.getpid(), "started": psutil.Process().create_time(),
        "version": 18, "bin_dir": "/nonexistent"}))
    reaped = servers.reap_stale(scratch_dir)
    assert entry in reaped
    assert not entry.exists()
    assert alive.exists(), "an entry whose owner is alive must be kept"


def test_reap_stale_stops_server_of_sigkilled_owner(pg_version, scratch_dir):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from harness import servers
        c = servers.start_throwaway({pg_version}, base_dir=Path({str(scratch_dir)!r}))
        print(c.datadir, flush=True)
        time.sleep(600)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        datadir = Path(proc.stdout.readline().strip())
        assert datadir.name == "data", f"child did not report a cluster: {datadir!r}"
        postmaster = int((datadir / "postmaster.pid").read_text().split("\n")[0])
        assert psutil.pid_exists(postmaster)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the owner died without cleaning up: its server is still running
    assert psutil.pid_exists(postmaster)
    reaped = servers.reap_stale(scratch_dir)
    assert datadir.parent in reaped
    assert not datadir.parent.exists()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(postmaster) and time.monotonic() < deadline:
        try:
            if psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    running = psutil.pid_exists(postmaster) and \
        psutil.Process(postmaster).status() != psutil.STATUS_ZOMBIE
    assert not running, "reap_stale left the orphaned postmaster running"


def test_find_bin_dir_honours_env_override(monkeypatch, pg_version):
    real = servers.find_bin_dir(pg_version)
    monkeypatch.setenv(f"HARNESS_PG_BIN_{pg_version}", str(real))
    assert servers.find_bin_dir(pg_version) == real
    monkeypatch.setenv(f"HARNESS_PG_BIN_{pg_version}", "/nonexistent/bin")
    with pytest.raises(servers.ServerNotFound, match=f"HARNESS_PG_BIN_{pg_version}"):
        servers.find_bin_dir(pg_version)


def test_find_bin_dir_rejects_wrong_major_in_override(monkeypatch, pg_version):
    real = servers.find_bin_dir(pg_version)
    monkeypatch.setenv("HARNESS_PG_BIN_99", str(real))
    with pytest.raises(servers.ServerNotFound, match=f"is PostgreSQL {pg_version}"):
        servers.find_bin_dir(99)


def test_find_bin_dir_raises_for_missing_version(monkeypatch):
    monkeypatch.delenv("HARNESS_PG_BIN_7", raising=False)
    with pytest.raises(servers.ServerNotFound, match="PostgreSQL 7"):
        servers.find_bin_dir(7)


def test_embedded_default_is_reused_with_a_stable_dsn(scratch_dir):
    repo = scratch_dir / "repo"
    repo.mkdir()
    try:
        first = servers.embedded_default(repo)
        dsn = first.dsn(dbname=servers.EMBEDDED_DBNAME)
        assert first.version == 18
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")
            assert conn.execute("SHOW fsync").fetchone()[0] == "on"
        state = json.loads((repo / ".harness" / "pg18" / "state.json").read_text())
        assert state["port"] == first.port
        assert servers.embedded_default(repo).dsn(dbname="forgea") == dsn  # already running
        (repo / ".harness" / "pg18" / "state.json").unlink()  # lost state: port from postmaster.pid
        assert servers.embedded_default(repo).dsn(dbname="forgea") == dsn
        assert servers.stop_embedded(repo) is True
        assert servers.stop_embedded(repo) is False
        again = servers.embedded_default(repo)  # started on demand, same data, same port
        assert again.dsn(dbname="forgea") == dsn
        assert again.is_running()
    finally:
        servers.stop_embedded(repo)
