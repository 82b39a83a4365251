"""Start and stop PostgreSQL clusters (18, 17, 16, 15).

The binaries (where each major comes from, the pinned npm builds) are found by
harness.pg_binaries; its names are re-exported here (``servers.find_bin_dir``).

Two kinds of cluster:

* throwaway clusters (tests): a fresh ``initdb`` under a registry directory
  (``/tmp/harness-clusters/<ownerpid>-<n>``), fsync off, destroyed at exit.
  ``reap_stale()`` removes clusters whose owner process is gone, so a killed
  test run leaves nothing behind for long.
* the embedded default cluster (CLI default target): PostgreSQL 18 kept under
  ``<repo>/.harness/pg18``, initialised once, started on demand, with a fixed
  port recorded in ``state.json`` so its DSN stays stable.

PostgreSQL refuses to run as root.  When we are root, initdb, pg_ctl and
postgres run as the system user ``harness_pg`` (created when missing), the data
directory is chowned to it, and every ancestor of the data and bin directories
is made traversable (o+x).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import psutil

# re-exported: callers and tests use them as servers.<name>
from .pg_binaries import (INSTALL_RECORD, NPM_BUILDS, NPM_PACKAGE, FileLock,  # noqa: F401
                          NpmBuild, ServerError, ServerNotFound, binary_major_version,
                          binary_version, extract_tarball, find_bin_dir, install_npm_build,
                          npm_cache_root)

SYSTEM_USER = "harness_pg"
SUPERUSER = "postgres"
DEFAULT_REGISTRY = Path("/tmp/harness-clusters")
EMBEDDED_VERSION = 18
EMBEDDED_DBNAME = "forgea"

# Every major the pack supports, newest first (the production pin first).
SUPPORTED_VERSIONS = (18, 17, 16, 15)

# Unix socket paths are limited to ~107 bytes; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 90


# --------------------------------------------------------------------------
# running as a non-root user


def _is_root() -> bool:
    return os.geteuid() == 0


def ensure_system_user() -> pwd.struct_passwd:
    """The ``harness_pg`` account, created when missing (root only)."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        check=False, capture_output=True, text=True,
    )
    try:  # a concurrent process may have created it first
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise ServerError(f"could not create system user {SYSTEM_USER} with useradd") from None


def _make_traversable(path: Path) -> None:
    """Add o+x to ``path`` and every ancestor (root only)."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
            if not mode & 0o001:
                p.chmod(mode | 0o001)
        except OSError:
            pass


def _run(args: list[str], *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program, as ``harness_pg`` when we are root."""
    kwargs = {}
    if _is_root():
        pw = ensure_system_user()
        kwargs = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    proc = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd="/",
        stdin=subprocess.DEVNULL, timeout=timeout, **kwargs,
    )
    if check and proc.returncode != 0:
        raise ServerError(
            f"command failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout}{proc.stderr}"
        )
    return proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as postgres does: a port whose old connections linger in TIME_WAIT is usable
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------
# a cluster


class Cluster:
    """One PostgreSQL data directory and the server running on it."""

    superuser = SUPERUSER

    def __init__(self, version: int, bin_dir: Path, datadir: Path, port: int | None = None,
                 *, throwaway: bool = False):
        self.version = int(version)
        self.bin_dir = Path(bin_dir)
        self.datadir = Path(datadir)
        self.port = port
        self.throwaway = throwaway

    def __repr__(self) -> str:
        return f"Cluster(version={self.version}, datadir={str(self.datadir)!r}, port={self.port})"

    @property
    def logfile(self) -> Path:
        return self.datadir / "server.log"

    def _prepare_dir(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.datadir.chmod(0o700)
        if _is_root():
            pw = ensure_system_user()
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
            _make_traversable(self.datadir.parent)
            _make_traversable(self.bin_dir)

    def init(self) -> None:
        """initdb with trust auth, superuser ``postgres``, UTF8, C locale."""
        self._prepare_dir()
        args = [str(self.bin_dir / "initdb"), "-D", str(self.datadir), "--auth=trust",
                "-U", SUPERUSER, "--encoding=UTF8", "--locale=C", "--no-instructions"]
        if self.throwaway:
            args.append("--no-sync")  # nothing to protect; saves seconds of fsync
        _run(args)
        socket_dir = str(self.datadir) if len(str(self.datadir)) <= _MAX_SOCKET_DIR else ""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{socket_dir}'",
            "max_connections": "200",
            "fsync": "off" if self.throwaway else "on",
            "logging_collector": "off",
        }
        if self.throwaway:
            settings.update(synchronous_commit="off", full_page_writes="off")
        lines = ["", "# added by harness.servers"] + [f"{k} = {v}" for k, v in settings.items()]
        conf = self.datadir / "postgresql.conf"
        with conf.open("a") as f:
            f.write("\n".join(lines) + "\n")

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``pg_ctl -D datadir ARGS`` (as harness_pg when root).

        ``start``/``restart`` log to ``datadir/server.log``; e.g.
        ``cluster.pg_ctl("restart", "-m", "immediate", "-w")``.
        """
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir)]
        if "start" in args or "restart" in args:
            cmd += ["-l", str(self.logfile)]
        return _run(cmd + list(args), check=check)

    def start(self) -> None:
        """Start the server on 127.0.0.1 (a free port unless one is set)."""
        if self.is_running():
            return
        attempts = 3
        for attempt in range(attempts):
            if self.port is None or not _port_is_free(self.port):
                self.port = free_port()
            proc = self.pg_ctl("start", "-w", "-t", "60", "-o", f"-p {self.port}", check=False)
            if proc.returncode == 0:
                return
            log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
            if "could not bind" in log or "already in use" in log:
                self.port = None  # lost a race for the port; try another
                continue
            break
        raise ServerError(f"pg_ctl start failed for {self}:\n{proc.stdout}{proc.stderr}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self.pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def is_running(self) -> bool:
        if not (self.datadir / "PG_VERSION").exists():
            return False
        return self.pg_ctl("status", check=False).returncode == 0

    def postmaster_alive(self) -> bool:
        """Whether this cluster's postmaster runs (no subprocess: cheap enough to
        ask before every test that needs this server)."""
        return _postmaster_of(self.datadir) is not None

    def running_port(self) -> int | None:
        """Port of the running server, from postmaster.pid (line 4)."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n")[3])
        except (OSError, ValueError, IndexError):
            return None

    def dsn(self, user: str = SUPERUSER, dbname: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, user: str = SUPERUSER, dbname: str = "postgres",
                autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self.dsn(user, dbname), autocommit=autocommit)

    @property
    def server_version_num(self) -> int:
        with self.connect() as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0])

    def create_database(self, dbname: str, owner: str = SUPERUSER) -> None:
        """CREATE DATABASE when missing."""
        with self.connect() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                return
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(dbname), psycopg.sql.Identifier(owner)))

    def destroy(self) -> None:
        """Stop immediately and delete the data directory (throwaway clusters)."""
        _kill_cluster(self.bin_dir, self.datadir)
        entry = self.datadir.parent
        shutil.rmtree(entry if _is_registry_entry(entry) else self.datadir, ignore_errors=True)
        _live_throwaways.pop(id(self), None)


# --------------------------------------------------------------------------
# throwaway clusters and their registry

_counter = itertools.count(1)
_live_throwaways: dict[int, Cluster] = {}


def _is_registry_entry(path: Path) -> bool:
    return (path / "owner.json").exists()


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _start_ticks(pid: int) -> int | None:
    """Clock ticks from boot to the start of process ``pid`` (field 22 of
    /proc/PID/stat), or None where there is no /proc.

    Unlike a wall-clock start time (psutil's create_time adds the boot time,
    which the kernel derives from the wall clock and rounds to a second), it
    never changes while the process lives: a clock step cannot make a live
    owner look like a dead one whose pid was reused.
    """
    try:  # bytes: the process name may be anything, not UTF-8 (setproctitle cuts it)
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        return int(stat.rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(entry: Path) -> bool:
    try:
        info = json.loads((entry / "owner.json").read_text())
        pid, ticks_then = int(info["pid"]), info.get("start_ticks")
        started = float(info.get("started") or 0.0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # owner.json not written yet (or broken): judge by the pid in the name
        try:
            pid = int(entry.name.split("-")[0])
        except ValueError:
            return False
        try:
            if time.time() - entry.stat().st_mtime < 60:
                return True  # being created right now
        except OSError:
            return True  # vanished: someone else is reaping it
        return psutil.pid_exists(pid)
    if ticks_then is not None and Path("/proc/self/stat").exists():
        return _start_ticks(pid) == ticks_then
    # no /proc (or an entry written before start_ticks): the wall-clock start
    # time, which a clock step of a second or more can move (the owner then
    # looks dead and its cluster is reaped)
    actual = _process_started(pid)
    return actual is not None and abs(actual - started) < 1.0


def _postmaster_of(datadir: Path) -> int | None:
    """The pid in ``datadir``/postmaster.pid when that process runs in ``datadir``
    (a postmaster, like each of its backends, works in its data directory); None
    when the file is missing or stale: its pid gone, or handed out again, maybe to
    another cluster's postgres, which must never be signalled in this one's name.
    A ``datadir`` that is a symlink has no postmaster of its own: a registry entry
    (in a directory every user may write) cannot point this at another's server."""
    datadir = Path(datadir)
    try:
        pid = int((datadir / "postmaster.pid").read_text().split("\n")[0])
        if not datadir.is_symlink() and \
                Path(psutil.Process(pid).cwd()) == datadir.parent.resolve() / datadir.name:
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def _kill_cluster(bin_dir: Path | None, datadir: Path) -> None:
    """Stop a cluster immediately: pg_ctl -m immediate, else SIGKILL the postmaster.
    Nothing is signalled unless the postmaster.pid's process runs in ``datadir``."""
    if _postmaster_of(datadir) is None:
        return
    if bin_dir is not None and (Path(bin_dir) / "pg_ctl").exists():
        try:
            _run([str(Path(bin_dir) / "pg_ctl"), "-D", str(datadir), "stop", "-w", "-t", "30",
                  "-m", "immediate"], check=False, timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            pass
    pid = _postmaster_of(datadir)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def registry_dir() -> Path:
    """Where throwaway clusters live: $HARNESS_CLUSTER_REGISTRY (read at each start:
    the test run points it at a tmpfs), else /tmp/harness-clusters."""
    return Path(os.environ.get("HARNESS_CLUSTER_REGISTRY") or DEFAULT_REGISTRY)


def reap_stale(registry: Path | None = None) -> list[Path]:
    """Stop and delete registry clusters whose owner process is dead."""
    registry = Path(registry or registry_dir())
    reaped = []
    if not registry.is_dir():
        return reaped
    for entry in sorted(registry.iterdir()):
        if not entry.is_dir() or _owner_alive(entry):
            continue
        bin_dir = None
        try:
            bin_dir = Path(json.loads((entry / "owner.json").read_text())["bin_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        _kill_cluster(bin_dir, entry / "data")
        shutil.rmtree(entry, ignore_errors=True)
        reaped.append(entry)
    return reaped


def _stop_throwaways_at_exit() -> None:
    for cluster in list(_live_throwaways.values()):
        try:
            cluster.destroy()
        except Exception:  # best effort at interpreter exit
            pass


atexit.register(_stop_throwaways_at_exit)


def start_throwaway(version: int, base_dir: Path | None = None) -> Cluster:
    """Init and start a fresh, fsync-off cluster; destroyed at interpreter exit."""
    registry = Path(base_dir or registry_dir())
    reap_stale(registry)
    bin_dir = find_bin_dir(version)
    registry.mkdir(parents=True, exist_ok=True)
    if base_dir is None:
        try:  # shared by every user of the machine, like /tmp
            registry.chmod(0o1777)
        except PermissionError:
            pass
    while True:
        entry = registry / f"{os.getpid()}-{next(_counter)}"
        try:
            entry.mkdir()
            break
        except FileExistsError:
            continue
    entry.chmod(0o755)
    (entry / "owner.json").write_text(json.dumps({
        "pid": os.getpid(), "started": _process_started(os.getpid()),
        "start_ticks": _start_ticks(os.getpid()),
        "version": int(version), "bin_dir": str(bin_dir),
    }))
    cluster = Cluster(version, bin_dir, entry / "data", throwaway=True)
    _live_throwaways[id(cluster)] = cluster
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster


# --------------------------------------------------------------------------
# the embedded default cluster (PostgreSQL 18 under <repo>/.harness/pg18)


def _embedded_home(repo_root: Path) -> Path:
    return Path(repo_root).resolve() / ".harness" / f"pg{EMBEDDED_VERSION}"


def _embedded_cluster(home: Path) -> Cluster:
    state_file = home / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    return Cluster(EMBEDDED_VERSION, find_bin_dir(EMBEDDED_VERSION), home / "data",
                   port=state.get("port"))


def _save_state(home: Path, cluster: Cluster) -> None:
    (home / "state.json").write_text(json.dumps(
        {"version": cluster.version, "port": cluster.port, "bin_dir": str(cluster.bin_dir)},
        indent=2) + "\n")


def embedded_default(repo_root: Path) -> Cluster:
    """The repo's embedded PostgreSQL 18, started on demand; database ``forgea`` exists.

    Its DSN: ``cluster.dsn(dbname="forgea")``.
    """
    home = _embedded_home(repo_root)
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(home / "lock"):
        cluster = _embedded_cluster(home)
        if not (cluster.datadir / "PG_VERSION").exists():
            shutil.rmtree(cluster.datadir, ignore_errors=True)
            cluster.init()
        if cluster.is_running():
            cluster.port = cluster.running_port() or cluster.port
        else:
            cluster.start()
        _save_state(home, cluster)
        cluster.create_database(EMBEDDED_DBNAME)
    return cluster


def stop_embedded(repo_root: Path) -> bool:
    """Stop the embedded cluster; True when it was running."""
    home = _embedded_home(repo_root)
    if not (home / "data" / "PG_VERSION").exists():
        return False
    with FileLock(home / "lock"):
        cluster = _embedded_cluster(home)
        if not cluster.is_running():
            return False
        cluster.stop()
        return True


# --------------------------------------------------------------------------
# python -m harness.servers [MAJOR ...]: find (and install) binaries, say where


def main(argv: list[str] | None = None) -> int:
    """Print, per major, the server version and where its binaries are.

    Installs the npm builds when they are missing, so CI can do it once, up
    front, and report the time it took.  Exit 1 when any major is unusable.
    """
    import sys
    args = sys.argv[1:] if argv is None else argv
    try:
        majors = [int(a) for a in args] or list(SUPPORTED_VERSIONS)
    except ValueError:
        print(f"usage: python -m harness.servers [MAJOR ...] (any of "
              f"{', '.join(map(str, SUPPORTED_VERSIONS))})", file=sys.stderr)
        return 2
    status = 0
    for major in majors:
        started = time.monotonic()
        try:
            bin_dir = find_bin_dir(major)
            source = (NPM_BUILDS[major].source if major in NPM_BUILDS
                      and not os.environ.get(f"HARNESS_PG_BIN_{major}") else "")
            print(f"PostgreSQL {binary_version(bin_dir)}: {bin_dir}"
                  + (f" ({source})" if source else "")
                  + f" [{time.monotonic() - started:.1f} s]")
        except (ServerNotFound, ServerError) as e:
            print(f"PostgreSQL {major}: NOT USABLE: {str(e).splitlines()[0]}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
