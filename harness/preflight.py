"""``harness preflight``: every data pre-condition of every pending file, read-only,
before anything commits.

A pre-condition is a plain SQL file ``sql/preflight/<name>.sql``: a header comment
(what it guards, which pending object needs it, the remedy), then ONE read-only
SELECT listing the offending rows, ordered. A versioned file declares the ones it
needs with ``-- harness: precondition <name>``; the file's own in-file check
(FM001) stays as the last line of defence and refuses exactly the same rows.

Header lines of a pre-condition file the harness reads:

* ``-- preflight: warning`` -- its rows are reported, never refused;
* ``-- preflight: when-next`` -- the data it checks is written by earlier files
  of the chain: evaluated only when its file is the next one to apply;
* ``-- Remedy: ...`` (and its indented continuation lines) -- printed with a
  failure.

Which pre-conditions are evaluated: those whose query can run on the current
catalog. One that needs a table, column or function an earlier pending file
creates (42P01, 42703, 42883, 42704, 3F000) is *deferred*, and so is a
``when-next`` one whose file is not next; ``harness apply`` evaluates each
deferred one right before its file (on a connection of its own, read-only), so
the run stops before that file, never inside it. One the role may not read
(42501) is *unchecked* and said so; neither fails the pre-flight.

Everything runs in one READ ONLY transaction that is rolled back; the rows of
a failure are fetched through a server-side cursor (the first N, then MOVE
FORWARD ALL for the total), in the query's own order.

The FAILED one-way door is told here too (:func:`failed_door`,
:func:`refuse_rollback_below_failed_door`): once a session is FAILED, no
rollback can go below the file that adds FAILED to "LabStatus", even with
--preserve (the previous schema has no truthful place for such a session).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlparse

from .bookkeeping import read_state
from .chain import MigrationFile, Problem, _rel, default_sql_root, header_lines, load_chain
from .chain_state import compute_status, select_pending
from .dsn import connect, redact
from .errors import HarnessError, PreflightFailed, RollbackRefused

PREFLIGHT_DIR = "preflight"
DEFAULT_LIMIT = 20
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: SQLSTATEs meaning "the catalog does not have it yet": the pre-condition is deferred
DEFERRING_SQLSTATES = {"42P01", "42703", "42883", "42704", "3F000"}
#: the role may not read what the query reads: not checked, said so
UNREADABLE_SQLSTATES = {"42501"}
_PREFLIGHT_DIRECTIVE = re.compile(r"^\s*--\s*preflight:\s*(?P<name>[a-z-]+)\s*$")
_SECTION = re.compile(r"^\s*--\s*(?P<key>[A-Z][A-Za-z ]*):\s?(?P<text>.*)$")
_FAILED_VALUE = re.compile(r"ADD\s+VALUE\s+(IF\s+NOT\s+EXISTS\s+)?'FAILED'", re.I)


# ---------------------------------------------------------------------------
# the pre-condition files

@dataclass(frozen=True)
class Precondition:
    name: str
    path: Path
    text: str

    def _flags(self) -> set[str]:
        return {m.group("name") for _, line in header_lines(self.text)
                if (m := _PREFLIGHT_DIRECTIVE.match(line))}

    @property
    def warning(self) -> bool:
        return "warning" in self._flags()

    @property
    def when_next(self) -> bool:
        return "when-next" in self._flags()

    @property
    def query(self) -> str:
        """The SELECT, without the header comment and the final semicolon."""
        lines = self.text.splitlines()
        start = len(header_lines(self.text))
        return "\n".join(lines[start:]).strip().rstrip(";").rstrip()

    def section(self, key: str) -> str:
        """The text of a ``-- Key: ...`` header paragraph (continuation lines joined)."""
        out, inside = [], False
        for _, line in header_lines(self.text):
            m = _SECTION.match(line)
            if m:
                inside = m.group("key") == key
                if inside:
                    out.append(m.group("text").strip())
                continue
            if inside:
                s = line.strip()
                if s.startswith("--") and s[2:].strip():
                    out.append(s[2:].strip())
                else:
                    inside = False
        return " ".join(out).strip()

    @property
    def remedy(self) -> str:
        return self.section("Remedy")

    def relpath(self, root: Path | None = None) -> str:
        return _rel(self.path, root)


def preflight_dir(sql_root: Path | None = None) -> Path:
    return Path(sql_root or default_sql_root()) / PREFLIGHT_DIR


def load(sql_root: Path | None = None) -> dict[str, Precondition]:
    """Every ``sql/preflight/<name>.sql`` by name."""
    d = preflight_dir(sql_root)
    if not d.is_dir():
        return {}
    return {p.stem: Precondition(p.stem, p, p.read_text(encoding="utf-8"))
            for p in sorted(d.glob("*.sql")) if p.is_file()}


def lint_problems(sql_root: Path, files: list[MigrationFile]) -> list[Problem]:
    """Pre-condition rules: every named pre-condition exists; every pre-condition
    file is needed by a versioned file; each is one ordered SELECT with a remedy."""
    repo = Path(sql_root).parent
    pres = load(sql_root)
    out: list[Problem] = []
    used: set[str] = set()
    for f in files:
        for d in f.directives:
            if d.name != "precondition":
                continue
            names = d.args.split()
            if not names:
                out.append(Problem(f.relpath(repo), d.line, "precondition-missing",
                                   "'-- harness: precondition NAME' needs a name"))
            for n in names:
                used.add(n)
                if n not in pres:
                    out.append(Problem(f.relpath(repo), d.line, "precondition-missing",
                                       f"no pre-condition file sql/{PREFLIGHT_DIR}/{n}.sql"))
    for name, pre in pres.items():
        rel = pre.relpath(repo)
        if name not in used:
            out.append(Problem(rel, 1, "precondition-unused",
                               "no versioned file needs it ('-- harness: precondition "
                               f"{name}')"))
        if not NAME_RE.match(name):
            out.append(Problem(rel, 1, "precondition-name", "name must match [a-z][a-z0-9_]*"))
        stmts = [s for s in sqlparse.parse(pre.text) if s.token_first(skip_cm=True) is not None]
        if len(stmts) != 1 or stmts[0].get_type() != "SELECT":
            out.append(Problem(rel, 1, "precondition-select",
                               "must hold exactly one SELECT statement"))
        elif not re.search(r"\bORDER\s+BY\b", pre.query, re.I):
            out.append(Problem(rel, 1, "precondition-select",
                               "the SELECT must order its rows (ORDER BY)"))
        if not pre.remedy:
            out.append(Problem(rel, 1, "precondition-remedy",
                               "the header must say the remedy ('-- Remedy: ...')"))
    return out


# ---------------------------------------------------------------------------
# evaluation

@dataclass
class Outcome:
    """One pre-condition against the live database. ``state``: ok, failed,
    warning (rows found, never refused), deferred or unchecked."""

    name: str
    file: str                       # sql/preflight/<name>.sql
    needed_by: list[str]
    state: str
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    total: int = 0
    reason: str = ""
    remedy: str = ""
    sql: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "needed_by": self.needed_by,
                "state": self.state, "total": self.total, "columns": self.columns,
                "rows": [[None if v is None else str(v) for v in r] for r in self.rows],
                "reason": self.reason, "remedy": self.remedy, "sql": self.sql}


@dataclass
class Report:
    target: str
    pending: list[str]
    outcomes: list[Outcome]
    limit: int = DEFAULT_LIMIT
    failed_door: str | None = None     # the pending file that adds FAILED, if any

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def by_name(self, name: str) -> Outcome:
        return next(o for o in self.outcomes if o.name == name)

    def as_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "pending": self.pending,
                "limit": self.limit, "failed_door": self.failed_door,
                "failed_door_note": door_note(self.failed_door) if self.failed_door else None,
                "preconditions": [o.as_dict() for o in self.outcomes]}


def needed(pending: list[MigrationFile]) -> dict[str, list[str]]:
    """Pre-condition name -> the pending files that need it, in apply order."""
    out: dict[str, list[str]] = {}
    for f in pending:
        for n in f.preconditions:
            out.setdefault(n, []).append(f.id)
    return out


def evaluate(conn: psycopg.Connection, pre: Precondition, needed_by: list[str],
             limit: int, root: Path | None = None) -> Outcome:
    """Run ``pre`` inside the connection's (read-only) transaction, in a savepoint."""
    out = Outcome(pre.name, pre.relpath(root), list(needed_by), "ok", remedy=pre.remedy,
                  sql=pre.query + ";")
    try:
        with conn.transaction():
            name = f"harness_preflight_{pre.name}"
            cur = conn.cursor(name=name)
            cur.execute(pre.query)
            rows = cur.fetchmany(limit) if limit > 0 else []
            out.columns = [c.name for c in cur.description or []]
            more = conn.execute(f'MOVE FORWARD ALL IN "{name}"').statusmessage
            cur.close()
    except psycopg.Error as e:
        state = getattr(e, "sqlstate", None)
        primary = (e.diag.message_primary if e.diag and e.diag.message_primary
                   else str(e)).strip()
        if state in DEFERRING_SQLSTATES:
            out.state = "deferred"
            out.reason = (f"cannot run on the current catalog ({state}: {primary}); an "
                          f"earlier pending file creates it; `harness apply` evaluates it "
                          f"right before {needed_by[0]}")
            return out
        if state in UNREADABLE_SQLSTATES:
            out.state = "unchecked"
            out.reason = (f"not checked: this role may not read what it reads ({state}: "
                          f"{primary}); the migration owner can, and `harness apply` "
                          "checks it")
            return out
        raise
    out.rows = [tuple(r) for r in rows]
    out.total = len(rows) + int((more or "MOVE 0").split()[-1])
    if out.total:
        out.state = "warning" if pre.warning else "failed"
    return out


def _read_only(dsn: str) -> psycopg.Connection:
    conn = connect(dsn, autocommit=False)
    conn.read_only = True
    return conn


def check(conn: psycopg.Connection, pending: list[MigrationFile],
          pres: dict[str, Precondition], limit: int = DEFAULT_LIMIT,
          root: Path | None = None) -> list[Outcome]:
    """Every pre-condition the ``pending`` files need, in apply order."""
    outcomes = []
    first = pending[0].id if pending else None
    for name, by in needed(pending).items():
        pre = pres.get(name)
        if pre is None:
            raise HarnessError(f"{by[0]} needs the pre-condition {name}, but "
                               f"sql/{PREFLIGHT_DIR}/{name}.sql does not exist "
                               "(`harness lint` reports it)")
        if pre.when_next and by[0] != first:
            outcomes.append(Outcome(
                name, pre.relpath(root), list(by), "deferred", remedy=pre.remedy,
                sql=pre.query + ";",
                reason=f"checks data earlier files of the chain write; evaluated when "
                       f"{by[0]} is the next file (`harness apply` does so right before it)"))
            continue
        outcomes.append(evaluate(conn, pre, by, limit, root))
    return outcomes


def run(target_dsn: str, *, sql_root: Path | None = None, to: str | None = None,
        limit: int = DEFAULT_LIMIT, files: list[MigrationFile] | None = None) -> Report:
    """The pre-flight of the files apply would run (through ``to``): one READ ONLY
    transaction, rolled back. Needs no privilege beyond reading the tables the
    pre-conditions read and the harness bookkeeping."""
    files = files if files is not None else load_chain(sql_root)
    pres = load(sql_root)
    with _read_only(target_dsn) as conn:
        try:
            state = read_state(conn)
        except psycopg.errors.InsufficientPrivilege as e:
            raise HarnessError(
                "cannot read the harness bookkeeping (which files are pending) as this "
                f"role: {e.diag.message_primary}",
                details=["GRANT USAGE ON SCHEMA harness and SELECT ON its tables "
                         "(harness.\"_yoyo_migration\", harness.\"_harness_migration\") "
                         "to the role that runs the pre-flight"]) from e
        st = compute_status(files, state, None)
        _target, pending = select_pending(files, st, to)
        outcomes = check(conn, pending, pres, limit)
        conn.rollback()
    door = failed_door(files)
    return Report(redact(target_dsn), [f.id for f in pending], outcomes, limit,
                  failed_door=door.id if door and door in pending else None)


def check_before(target_dsn: str, f: MigrationFile, names: set[str],
                 sql_root: Path | None = None, limit: int = DEFAULT_LIMIT) -> None:
    """Apply's check right before ``f``: its pre-conditions in ``names`` (the ones
    deferred by the pre-flight), on a read-only connection of their own; raises
    :class:`PreflightFailed` when one does not hold."""
    todo = [n for n in f.preconditions if n in names]
    if not todo:
        return
    pres = load(sql_root)
    with _read_only(target_dsn) as conn:
        outcomes = [evaluate(conn, pres[n], [f.id], limit) for n in todo]
        conn.rollback()
    failed = [o for o in outcomes if o.state == "failed"]
    if failed:
        raise PreflightFailed(
            f"pre-flight of {f.id} failed (checked right before it): "
            f"{len(failed)} pre-condition(s) do not hold; nothing of {f.id} was changed",
            details=[line for o in failed for line in render_outcome(o, limit)])


def refuse(report: Report, *, what: str = "apply") -> None:
    """Raise :class:`PreflightFailed` (exit 3) when a pre-condition does not hold."""
    if report.ok:
        return
    names = ", ".join(o.name for o in report.failures)
    raise PreflightFailed(
        f"pre-flight failed: {len(report.failures)} pre-condition(s) of the pending files "
        f"do not hold ({names}); {what} refused before anything changed; nothing was "
        "changed",
        details=render(report, only_problems=True))


# ---------------------------------------------------------------------------
# the FAILED one-way door

def failed_door(files: list[MigrationFile]) -> MigrationFile | None:
    """The file that adds FAILED to "LabStatus" (found by its ``ADD VALUE 'FAILED'``)."""
    return next((f for f in files if _FAILED_VALUE.search(f.sql)), None)


def door_note(door_id: str) -> str:
    return (f"one-way door: {door_id} adds FAILED to LabStatus. Once any session is "
            f"FAILED, no rollback can go below {door_id} (it must stay applied), not even "
            "with --preserve: the schema before it has no truthful status for a FAILED "
            "session. Write FAILED only once rolling back below it is ruled out.")


def failed_sessions(conn: psycopg.Connection, limit: int) -> tuple[list[tuple], int]:
    """(the first ``limit`` FAILED sessions: id, userId, labId; their count)."""
    rows = conn.execute(
        'SELECT "id", "userId", "labId", count(*) OVER () FROM public."LabSession" '
        "WHERE \"status\"::text = 'FAILED' ORDER BY \"id\" LIMIT %s", (limit,)).fetchall()
    return [tuple(r[:3]) for r in rows], (rows[0][3] if rows else 0)


def refuse_rollback_below_failed_door(conn: psycopg.Connection, files: list[MigrationFile],
                                      victims: list[str],
                                      limit: int = DEFAULT_LIMIT) -> None:
    """Refuse (exit 3, before anything changed) a rollback that would undo the file
    that adds FAILED while sessions are FAILED, naming them and the lowest version
    this database can still be rolled back to."""
    door = failed_door(files)
    if door is None or door.id not in victims:
        return
    rows, total = failed_sessions(conn, limit)
    if not total:
        return
    lines = [f"session {sid} (user {uid}, lab {lab}) is FAILED" for sid, uid, lab in rows]
    if total > len(rows):
        lines.append(f"... and {total - len(rows)} more (first {len(rows)} of {total})")
    raise RollbackRefused(
        sqlstate="FM002",   # the refusal the rollback file would raise, said before it runs
        message=f"refusing to roll back below {door.id}: {total} session(s) are FAILED and the "
        f"schema before {door.id} cannot hold them, not even with --preserve; nothing "
        "was rolled back",
        details=lines + [
            f"the lowest version this database can be rolled back to is {door.id} "
            f"(`harness rollback --to {door.id}` keeps it applied)",
            'list them all: SELECT "id", "userId", "labId" FROM public."LabSession" '
            "WHERE \"status\"::text = 'FAILED' ORDER BY \"id\";"])


# ---------------------------------------------------------------------------
# output

def _cell(v) -> str:
    return "NULL" if v is None else str(v)


def render_outcome(o: Outcome, limit: int) -> list[str]:
    """The lines of one outcome: a failure or warning with its rows, the listing
    SQL and the remedy; a deferred or unchecked one with its reason."""
    head = f"{o.state.upper()} {o.name} ({o.file}), needed by {', '.join(o.needed_by)}"
    if o.state in ("deferred", "unchecked"):
        return [f"{head}: {o.reason}"]
    if o.state == "ok":
        return [f"{head}: ok"]
    shown = len(o.rows)
    lines = [f"{head}: {o.total} row(s)"
             + (f", the first {shown} shown" if shown < o.total else "")]
    lines.append("  " + " | ".join(o.columns))
    lines += ["  " + " | ".join(_cell(v) for v in r) for r in o.rows]
    if shown < o.total:
        lines.append(f"  ... {o.total - shown} more (--limit N shows more)")
    lines.append(f"  to list them all (psql -f {o.file}):")
    lines += ["    " + line for line in o.sql.splitlines()]
    if o.remedy:
        lines.append(f"  remedy: {o.remedy}")
    return lines


def render(report: Report, *, only_problems: bool = False) -> list[str]:
    lines = []
    for o in report.outcomes:
        if only_problems and o.state == "ok":
            continue
        lines += render_outcome(o, report.limit)
    if report.failed_door:
        lines.append(door_note(report.failed_door))
    return lines
