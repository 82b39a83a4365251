"""``harness lint``: sqlfluff + squawk + the pack's own rules over every SQL file.

Output: one finding per line, ``file:line: RULE message``; non-zero exit on any.

The pack's own rules
    chain-*               every versioned file has its rollback and vice versa,
                          versions unique, names ``V####__name.sql``, known directives
    header-comment        every file opens with a comment block (what/why/locks)
    transaction-control   no top-level BEGIN/COMMIT/ROLLBACK: the harness runs each
                          file in its own transaction (with its bookkeeping)
    psql-meta-command     no ``\\`` meta-commands: files must also run through the
                          harness (not only through psql)
    definer-search-path   every SECURITY DEFINER function pins ``SET search_path``
    function-execute-public  every function a versioned file creates has EXECUTE
                          revoked from PUBLIC in the same file (``REVOKE ALL|EXECUTE
                          ON FUNCTION name ... FROM PUBLIC``), unless the header says
                          ``-- harness: public-function NAME reason``
    no-transaction-idempotent  ``CREATE INDEX CONCURRENTLY`` in a no-transaction file
                          uses ``IF NOT EXISTS`` (the file may be re-run)

squawk exclusions live in :data:`SQUAWK_EXCLUSIONS` below, each with its reason
(by path pattern, never blanket without a reason); sqlfluff's in ``.sqlfluff``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlparse

from . import chain_doc
from .chain import FILE_RE, has_header_comment, parse_directives, scan
from .sqlnames import QUALIFIED, unquote

#: squawk judges online safety against the oldest server the pack supports.
SQUAWK_PG_VERSION = "15.0"

#: (path pattern relative to the repo root, squawk rule, reason)
SQUAWK_EXCLUSIONS: list[tuple[str, str, str]] = [
    ("sql/*/*.sql", "require-lock-timeout",
     "the harness sets lock_timeout (default 100ms per attempt, retried) on every "
     "migration session; files "
     "SET LOCAL it only where they need another value (docs/architecture.md)"),
    ("sql/*/*.sql", "require-statement-timeout",
     "the harness sets statement_timeout on every migration session (see above)"),
    ("sql/*/*.sql", "prefer-timestamp-tz",
     "CONTRACT 4: new columns follow the production convention, timestamp(3) holding UTC"),
    ("sql/*/*.sql", "prefer-bigint-over-int",
     "the contract fixes these integer columns (Prisma Int: counters, version numbers, "
     "exit codes); identifiers are uuid"),
    ("sql/rollback/*.sql", "ban-drop-table",
     "a rollback drops what its migration created, by design; data the old schema "
     "cannot hold is refused (FM002) or archived (--preserve)"),
    ("sql/rollback/*.sql", "ban-drop-column", "rollbacks drop what their migration added"),
    ("sql/rollback/*.sql", "ban-drop-type", "rollbacks drop what their migration added"),
    ("sql/rollback/*.sql", "ban-drop-function", "rollbacks drop what their migration added"),
    ("sql/rollback/*.sql", "ban-drop-constraint", "rollbacks drop what their migration added"),
    ("sql/rollback/*.sql", "ban-drop-default", "rollbacks drop what their migration added"),
    ("sql/rollback/*.sql", "ban-drop-index", "rollbacks drop what their migration added"),
    ("sql/rollback/*.sql", "ban-drop-not-null", "rollbacks undo the NOT NULL their migration set"),
    ("sql/migrations/V0008__lab_session_backfill.sql", "ban-drop-function",
     "drops the temporary batch-backfill helper the same file created (same transaction)"),
    ("sql/migrations/V0009__verification_attempt_copy.sql", "ban-drop-function",
     "drops the temporary copy helpers the same file created (same transaction)"),
    ("sql/migrations/V0012__lab_session_version_not_null.sql", "adding-not-nullable-field",
     "SET NOT NULL follows a validated CHECK (labVersionId IS NOT NULL) added by V0010, so "
     "PostgreSQL >= 12 skips the table scan (instant ACCESS EXCLUSIVE)"),
    ("sql/migrations/V0012__lab_session_version_not_null.sql", "ban-drop-constraint",
     "drops that helper CHECK once NOT NULL holds (the guarantee is kept by NOT NULL)"),
    ("sql/rollback/V0012__lab_session_version_not_null.sql", "constraint-missing-not-valid",
     "the rollback restores the CHECK validated, as V0011 left it, inside the ACCESS "
     "EXCLUSIVE window DROP NOT NULL needs anyway (one scan; its header says so)"),
    ("sql/rollback/V0004__lab_version.sql", "renaming-object",
     "an enum label cannot be dropped: the rollback renames LabStatus aside, recreates "
     "it without FAILED and retypes the columns"),
    ("sql/rollback/V0004__lab_version.sql", "changing-column-type",
     "same: retyping the status columns to the recreated LabStatus is the only way back"),
]

#: Files squawk checks as if wrapped in a transaction: every transactional file
#: (the harness runs each in one transaction, so a failed file leaves nothing
#: behind and objects created in it are new). no-transaction files are checked
#: without that assumption, so prefer-robust-stmts applies to them.


@dataclass
class Finding:
    file: str
    line: int
    rule: str
    message: str
    tool: str = "harness"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule} {self.message}"

    def as_dict(self) -> dict:
        return asdict(self)


def sql_files(repo: Path) -> list[Path]:
    out = []
    for folder in ("migrations", "triggers", "rollback"):
        d = repo / "sql" / folder
        if d.is_dir():
            out += sorted(p for p in d.glob("*.sql") if p.is_file())
    return out


def _rel(p: Path, repo: Path) -> str:
    try:
        return str(p.resolve().relative_to(repo.resolve()))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------- own rules

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$.*?\$\1\$", re.S)
_CREATE_FUNC = re.compile(
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\s+(" + QUALIFIED + ")", re.I)
_TX = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|END|START\s+TRANSACTION|ABORT)\b", re.I)


def _statements_with_lines(text: str):
    """(start line, statement text, statement without comments) triples."""
    pos = 0
    for stmt in sqlparse.split(text):
        idx = text.find(stmt, pos)
        if idx < 0:
            idx = pos
        body = sqlparse.format(stmt, strip_comments=True).strip()
        lead = len(stmt) - len(stmt.lstrip())
        line = text.count("\n", 0, idx + lead) + 1
        # skip leading comment lines to the first code line
        for offset, l in enumerate(stmt.lstrip().splitlines()):
            if l.strip() and not l.strip().startswith("--"):
                line += offset
                break
        pos = idx + len(stmt)
        if body:
            yield line, stmt, body


def _revocations(text: str) -> tuple[set[str], set[str], bool]:
    """Functions a file revokes from PUBLIC, functions it drops, and whether it
    revokes EXECUTE on ALL FUNCTIONS from PUBLIC (comments stripped, bodies kept out)."""
    stripped = _DOLLAR.sub("$$ $$", sqlparse.format(text, strip_comments=True))
    revoked = set()
    for m in re.finditer(
            r"REVOKE\s+(?:ALL(?:\s+PRIVILEGES)?|EXECUTE)\s+ON\s+(?:FUNCTION|PROCEDURE|ROUTINE)\s+"
            r"(.*?)\s+FROM\s+([^;]*)", stripped, re.I | re.S):
        if re.search(r"\bPUBLIC\b", m.group(2), re.I):
            for sig in re.finditer(rf"({QUALIFIED})\s*\(", m.group(1)):
                revoked.add(unquote(sig.group(1)))
    dropped = {unquote(m.group(1)) for m in re.finditer(
        r"DROP\s+(?:FUNCTION|PROCEDURE|ROUTINE)\s+(?:IF\s+EXISTS\s+)?"
        rf"({QUALIFIED})", stripped, re.I)}
    all_revoked = re.search(r"REVOKE\s+\w+(?:\s+PRIVILEGES)?\s+ON\s+ALL\s+(FUNCTIONS|ROUTINES)"
                            r"\s+IN\s+SCHEMA\s+.*?FROM\s+[^;]*\bPUBLIC\b", stripped,
                            re.I | re.S)
    return revoked, dropped, bool(all_revoked)


def _statement_rules(rel: str, text: str, *, no_tx: bool, baseline: bool, is_rollback: bool,
                     public_ok: set, revoked: set, dropped: set, all_revoked: bool,
                     revoked_in_chain: set) -> list[Finding]:
    """The per-statement rules of one file: no transaction control, idempotent
    CREATE INDEX CONCURRENTLY in no-transaction files, SECURITY DEFINER with a
    pinned search_path, every created function's EXECUTE revoked from PUBLIC."""
    findings: list[Finding] = []
    for line, stmt, body in _statements_with_lines(text):
        if _TX.match(body):
            findings.append(Finding(rel, line, "transaction-control",
                                    f"'{body.splitlines()[0][:40]}': the harness runs each "
                                    "file in its own transaction"))
        if no_tx:
            for m in re.finditer(r"CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?!IF\s+NOT\s+EXISTS)",
                                 body, re.I):
                findings.append(Finding(rel, line, "no-transaction-idempotent",
                                        "CREATE INDEX CONCURRENTLY without IF NOT EXISTS in a "
                                        "no-transaction file (it must be re-runnable)"))
        m = _CREATE_FUNC.match(body)
        if not m:
            continue
        fname = unquote(m.group(3))
        outside = _DOLLAR.sub("$$ $$", body)
        if re.search(r"\bSECURITY\s+DEFINER\b", outside, re.I) and not re.search(
                r"\bSET\s+search_path\b", outside, re.I):
            findings.append(Finding(rel, line, "definer-search-path",
                                    f"SECURITY DEFINER function {fname} does not pin "
                                    "search_path (SET search_path = pg_catalog, public)"))
        if baseline:
            continue   # production's own functions, as they are; V0002 revokes them
        if is_rollback and m.group(1):
            continue   # CREATE OR REPLACE in a rollback restores a function (ACL kept)
        if m.group(1) and fname in revoked_in_chain:
            continue   # replaces a function an earlier file revoked (ACL is kept)
        if fname in dropped:
            continue   # temporary helper: created and dropped in the same file
        if fname in revoked or fname.lower() in public_ok or fname in public_ok or all_revoked:
            continue
        findings.append(Finding(rel, line, "function-execute-public",
                                f"function {fname} is created without 'REVOKE ALL ON "
                                f"FUNCTION {fname}(...) FROM PUBLIC' (or a '-- harness: "
                                f"public-function {fname} reason' header line)"))
    return findings


def own_rules(repo: Path) -> list[Finding]:
    """The pack's own rules over every SQL file (the chain's problems included)."""
    findings: list[Finding] = []
    _files, problems = scan(repo / "sql")
    for p in problems:
        findings.append(Finding(p.file, p.line, p.rule, p.message))

    def order(p: Path):
        m = FILE_RE.match(p.name)
        return (p.parent.name == "rollback", int(m.group("version")) if m else 0, p.name)

    revoked_in_chain: set[str] = set()   # revoked from PUBLIC by earlier versioned files
    for path in sorted(sql_files(repo), key=order):
        rel = _rel(path, repo)
        text = path.read_text(encoding="utf-8")
        is_rollback = path.parent.name == "rollback"
        directives = parse_directives(text)
        names = {d.name for d in directives}
        baseline = "baseline" in names
        no_tx = "no-transaction" in names
        public_ok = {d.args.split()[0].lower() if d.args.split() and not d.args.split()[0].startswith('"')
                     else unquote(d.args.split()[0]) if d.args.split() else ""
                     for d in directives if d.name == "public-function"}
        for d in directives:
            if d.name == "public-function" and len(d.args.split()) < 2:
                findings.append(Finding(rel, d.line, "function-execute-public",
                                        "'-- harness: public-function NAME reason' needs a reason"))

        if not has_header_comment(text):
            findings.append(Finding(rel, 1, "header-comment",
                                    "file must open with a comment block (what, why, locks, "
                                    "rollback behaviour)"))
        if FILE_RE.match(path.name) is None:
            continue  # chain-file-name already reported

        for n, line in enumerate(text.splitlines(), 1):
            if line.startswith("\\"):
                findings.append(Finding(rel, n, "psql-meta-command",
                                        "psql meta-commands are not allowed (the harness "
                                        "runs files without psql)"))

        revoked, dropped, all_revoked = _revocations(text)

        findings += _statement_rules(rel, text, no_tx=no_tx, baseline=baseline,
                                     is_rollback=is_rollback, public_ok=public_ok,
                                     revoked=revoked, dropped=dropped, all_revoked=all_revoked,
                                     revoked_in_chain=revoked_in_chain)
        if not is_rollback:
            revoked_in_chain |= revoked
        if not baseline:
            findings += _header_field_rules(rel, text, is_rollback=is_rollback)
    return findings + created_once(repo)


def _header_field_rules(rel: str, text: str, *, is_rollback: bool) -> list[Finding]:
    """Every header has the named fields the chain table is generated from."""
    return [Finding(rel, 1, "header-fields",
                    f"the header has no '-- {name}:' field (docs/dba.md's chain table is "
                    "generated from these fields; see harness/chain_doc.py)")
            for name in chain_doc.missing_fields(text, rollback=is_rollback)]


_CREATE_TRIGGER = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+(" + QUALIFIED + ")",
    re.I)


def created_once(repo: Path) -> list[Finding]:
    """The release rule: after the baseline, every function, procedure and trigger
    is created by exactly one versioned file, in its final form."""
    files, _problems = scan(repo / "sql")
    first: dict[str, str] = {}
    findings = []
    for f in files:
        if f.baseline:
            continue
        rel = f.relpath(repo)
        seen_here = set()
        for line, _stmt, body in _statements_with_lines(f.sql):
            fm, tm = _CREATE_FUNC.match(body), _CREATE_TRIGGER.match(body)
            if not (fm or tm):
                continue
            name = (f"function {unquote(fm.group(3)).lower()}" if fm
                    else f"trigger {unquote(tm.group(1)).lower()}")
            if name in first and first[name] != rel:
                findings.append(Finding(rel, line, "created-once",
                                        f"{name} is already created by {first[name]}: each "
                                        "function, procedure and trigger is created by one "
                                        "versioned file, in its final form"))
            elif name in seen_here:
                findings.append(Finding(rel, line, "created-once",
                                        f"{name} is created twice in this file"))
            first.setdefault(name, rel)
            seen_here.add(name)
    return findings


# --------------------------------------------------------------------------- squawk

def squawk_exclusions(rel: str) -> dict[str, str]:
    out = {}
    for pattern, rule, reason in SQUAWK_EXCLUSIONS:
        if fnmatch.fnmatch(rel, pattern):
            out[rule] = reason
    return out


def _tool(name: str) -> str | None:
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    return shutil.which(name)


def run_squawk(repo: Path, files: list[Path]) -> list[Finding]:
    exe = _tool("squawk")
    if not exe:
        return [Finding("-", 0, "squawk-missing", "the squawk binary (squawk-cli) is not "
                        "installed", "squawk")]
    findings = []
    for path in files:
        rel = _rel(path, repo)
        text = path.read_text(encoding="utf-8")
        excl = squawk_exclusions(rel)
        args = [exe, "--reporter=json", f"--pg-version={SQUAWK_PG_VERSION}"]
        if "no-transaction" not in {d.name for d in parse_directives(text)}:
            args.append("--assume-in-transaction")
        if excl:
            args.append("--exclude=" + ",".join(sorted(excl)))
        args.append(rel)
        proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=120)
        try:
            items = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            findings.append(Finding(rel, 1, "squawk-error",
                                    (proc.stderr or proc.stdout).strip().splitlines()[0]
                                    if (proc.stderr or proc.stdout).strip() else
                                    f"squawk exited {proc.returncode}", "squawk"))
            continue
        for it in items:
            rule = it.get("rule_name") or "squawk"
            # squawk's JSON reporter counts lines from 0
            findings.append(Finding(rel, int(it.get("line", 0)) + 1,
                                    f"squawk:{rule}", (it.get("message") or "").strip(), "squawk"))
    return findings


# --------------------------------------------------------------------------- sqlfluff

def run_sqlfluff(repo: Path, files: list[Path]) -> list[Finding]:
    if not files:
        return []
    args = [sys.executable, "-m", "sqlfluff", "lint", "--format", "json", "--nofail",
            "--disable-progress-bar"]
    cfg = repo / ".sqlfluff"
    if cfg.exists():
        args += ["--config", str(cfg)]
    args += [_rel(p, repo) for p in files]
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600)
    try:
        data = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return [Finding("-", 0, "sqlfluff-error", (proc.stderr or proc.stdout).strip()[:300],
                        "sqlfluff")]
    findings = []
    for f in data:
        for v in f.get("violations", []):
            findings.append(Finding(f["filepath"], int(v.get("start_line_no") or 1),
                                    f"sqlfluff:{v.get('code')}",
                                    (v.get("description") or "").strip(), "sqlfluff"))
    return findings


def run_lint(repo: Path | None = None, *, tools: bool = True) -> list[Finding]:
    """Every finding over the repo's SQL files (own rules, then squawk, then sqlfluff)."""
    from .chain import find_repo_root
    repo = Path(repo) if repo else find_repo_root()
    files = sql_files(repo)
    findings = own_rules(repo)
    if tools:
        findings += run_squawk(repo, files)
        findings += run_sqlfluff(repo, files)
    findings.sort(key=lambda f: (f.file, f.line, f.rule))
    return findings

