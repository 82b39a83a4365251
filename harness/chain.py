"""The migration chain: one ordered version sequence over two folders.

``sql/migrations/V####__name.sql`` and ``sql/triggers/V####__name.sql`` form a
single sequence ordered by the 4-digit version (gaps allowed, duplicates not);
each file pairs with ``sql/rollback/<same file name>``.

Header directives are comment lines of the leading comment block of the form
``-- harness: <directive> [arguments]``:

* ``no-transaction`` -- run statement by statement in autocommit mode;
* ``baseline`` -- the adoptable production baseline (V0001 only);
* ``public-function NAME reason`` -- (lint) a function deliberately left
  executable by PUBLIC;
* ``precondition NAME [NAME...]`` -- the file needs the data pre-condition
  ``sql/preflight/NAME.sql`` (:mod:`harness.preflight` runs it before apply).

Checksums are the sha256 of the file's bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ChainError

FILE_RE = re.compile(r"^V(?P<version>\d{4})__(?P<name>[A-Za-z0-9_]+)\.sql$")
DIRECTIVE_RE = re.compile(r"^\s*--\s*harness:\s*(?P<name>[a-z][a-z0-9-]*)\s*(?P<args>.*?)\s*$")
VERSIONED_DIRS = ("migrations", "triggers")
ROLLBACK_DIR = "rollback"
KNOWN_DIRECTIVES = {"no-transaction", "baseline", "public-function", "precondition"}


@dataclass(frozen=True)
class Directive:
    name: str
    args: str
    line: int


@dataclass(frozen=True)
class MigrationFile:
    version: int
    id: str                     # file name without .sql, e.g. V0001__baseline
    path: Path
    folder: str                 # "migrations" or "triggers"
    sql: str
    checksum: str
    directives: tuple[Directive, ...] = ()
    rollback_path: Path | None = None
    rollback_sql: str | None = None
    rollback_checksum: str | None = None
    rollback_directives: tuple[Directive, ...] = ()

    @property
    def filename(self) -> str:
        return self.id + ".sql"

    @property
    def no_transaction(self) -> bool:
        return any(d.name == "no-transaction" for d in self.directives)

    @property
    def rollback_no_transaction(self) -> bool:
        return any(d.name == "no-transaction" for d in self.rollback_directives)

    @property
    def baseline(self) -> bool:
        return any(d.name == "baseline" for d in self.directives)

    @property
    def preconditions(self) -> tuple[str, ...]:
        """The data pre-conditions it needs (``-- harness: precondition NAME``)."""
        return tuple(n for d in self.directives if d.name == "precondition"
                     for n in d.args.split())

    def relpath(self, root: Path | None = None) -> str:
        return _rel(self.path, root)

    def rollback_relpath(self, root: Path | None = None) -> str:
        return _rel(self.rollback_path, root) if self.rollback_path else f"sql/rollback/{self.filename}"


@dataclass
class Problem:
    """A chain problem, in lint form ``file:line: RULE message``."""

    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule} {self.message}"


def _rel(path: Path | None, root: Path | None) -> str:
    if path is None:
        return ""
    for base in (root, Path.cwd()):
        if base is None:
            continue
        try:
            return os.path.relpath(path, base) if Path(path).is_relative_to(base) else str(path)
        except ValueError:
            pass
    return str(path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def header_lines(text: str) -> list[tuple[int, str]]:
    """The leading comment block: (1-based line number, line) pairs.

    Blank lines are allowed inside; it ends at the first line of SQL.
    ``/* */`` comments are not part of the header.
    """
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("--"):
            out.append((n, line))
            continue
        break
    return out


def parse_directives(text: str) -> tuple[Directive, ...]:
    found = []
    for n, line in header_lines(text):
        m = DIRECTIVE_RE.match(line)
        if m:
            found.append(Directive(m.group("name"), m.group("args"), n))
    return tuple(found)


def has_header_comment(text: str) -> bool:
    """True when the file opens with at least one real (non-directive) comment line."""
    for _, line in header_lines(text):
        s = line.strip()
        if s.startswith("--") and not DIRECTIVE_RE.match(line) and s.strip("- "):
            return True
    return False


def find_repo_root(start: Path | None = None) -> Path:
    """Nearest parent holding ``sql/`` and ``pyproject.toml``; else the start dir."""
    start = Path(start or Path.cwd()).resolve()
    for p in (start, *start.parents):
        if (p / "sql").is_dir() and (p / "pyproject.toml").is_file():
            return p
    # the package's own checkout
    here = Path(__file__).resolve().parent.parent
    if (here / "sql").is_dir():
        return here
    return start


def default_sql_root() -> Path:
    return find_repo_root() / "sql"


def scan(sql_root: Path) -> tuple[list[MigrationFile], list[Problem]]:
    """Read the chain, returning the files in version order and every problem."""
    sql_root = Path(sql_root)
    repo = sql_root.parent
    problems: list[Problem] = []
    found: dict[int, list[Path]] = {}
    for folder in VERSIONED_DIRS:
        d = sql_root / folder
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.is_dir() or p.name.startswith("."):
                continue
            m = FILE_RE.match(p.name)
            if not m:
                if p.suffix == ".sql":
                    problems.append(Problem(_rel(p, repo), 1, "chain-file-name",
                                            "not of the form V####__name.sql"))
                continue
            found.setdefault(int(m.group("version")), []).append(p)

    rollback_dir = sql_root / ROLLBACK_DIR
    rollbacks: dict[str, Path] = {}
    if rollback_dir.is_dir():
        for p in sorted(rollback_dir.iterdir()):
            if p.is_file() and p.suffix == ".sql":
                rollbacks[p.name] = p

    files: list[MigrationFile] = []
    used_rollbacks = set()
    for version in sorted(found):
        paths = found[version]
        if len(paths) > 1:
            for p in paths:
                problems.append(Problem(_rel(p, repo), 1, "chain-duplicate-version",
                                        f"version {version:04d} is used by "
                                        + ", ".join(_rel(q, repo) for q in paths)))
            continue
        p = paths[0]
        data = p.read_bytes()
        text = data.decode("utf-8")
        rb = rollbacks.get(p.name)
        rb_text = rb_sum = None
        rb_dirs: tuple[Directive, ...] = ()
        if rb is None:
            problems.append(Problem(_rel(p, repo), 1, "chain-missing-rollback",
                                    f"no rollback file sql/rollback/{p.name}"))
        else:
            used_rollbacks.add(p.name)
            rb_data = rb.read_bytes()
            rb_text = rb_data.decode("utf-8")
            rb_sum = sha256_bytes(rb_data)
            rb_dirs = parse_directives(rb_text)
        mf = MigrationFile(
            version=version, id=p.stem, path=p, folder=p.parent.name, sql=text,
            checksum=sha256_bytes(data), directives=parse_directives(text),
            rollback_path=rb, rollback_sql=rb_text, rollback_checksum=rb_sum,
            rollback_directives=rb_dirs,
        )
        for d in mf.directives + mf.rollback_directives:
            if d.name not in KNOWN_DIRECTIVES:
                where = mf.path if d in mf.directives else mf.rollback_path
                problems.append(Problem(_rel(where, repo), d.line, "chain-unknown-directive",
                                        f"unknown directive '-- harness: {d.name}'"))
        if mf.baseline and (files or mf.version != 1):
            problems.append(Problem(_rel(p, repo), 1, "chain-baseline",
                                    "only the first migration (V0001) may be the baseline"))
        files.append(mf)

    for name, p in rollbacks.items():
        if name in used_rollbacks:
            continue
        m = FILE_RE.match(name)
        if m and int(m.group("version")) in found and len(found[int(m.group("version"))]) > 1:
            continue  # already reported as a duplicate
        problems.append(Problem(_rel(p, repo), 1, "chain-orphan-rollback",
                                "rollback file without a versioned file of the same name"))
    return files, problems


def load_chain(sql_root: Path | None = None) -> list[MigrationFile]:
    """The chain in version order; raises :class:`ChainError` on any problem."""
    root = Path(sql_root) if sql_root else default_sql_root()
    if not (root / "migrations").is_dir():
        raise ChainError(f"no sql/migrations folder under {root}")
    files, problems = scan(root)
    if problems:
        raise ChainError("the migration chain is inconsistent:",
                         details=[str(p) for p in problems])
    return files


def find(files: list[MigrationFile], ref: str) -> MigrationFile:
    """Resolve a user reference: ``V0003__x``, ``V0003``, ``0003``, ``3`` or a file name."""
    ref = ref.strip()
    if ref.endswith(".sql"):
        ref = Path(ref).stem
    for f in files:
        if f.id == ref:
            return f
    m = re.fullmatch(r"[Vv]?(\d+)", ref)
    if m:
        v = int(m.group(1))
        for f in files:
            if f.version == v:
                return f
    from .errors import UsageError
    raise UsageError(f"unknown migration version {ref!r}")
