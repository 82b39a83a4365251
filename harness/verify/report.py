"""What verify reports: a :class:`Check` per named check, the :class:`Report`, its table.

A check ends in one of four statuses: ``pass``, ``info`` (findings that are no
failure), ``fail``, or ``could_not_run``: the check did not run, for lack of a
privilege of the connecting role (``permission denied for ...``) or for a
problem on this machine (``local``: missing binaries, no scratch server). Not
running is not failing: :attr:`Report.exit_code` is 1 when a check failed, else
5 (EXIT_LOCAL) when one could not run for a local problem, else 0.

Every text that reaches a finding (messages, row descriptions, values a hostile
row carries) is cut to :data:`MAX_TEXT` characters with control characters
escaped, so no row content can flood or garble the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import EXIT_FAILED, EXIT_LOCAL, EXIT_OK

#: rows a finding lists (the count says how many there are in all)
MAX_ROWS = 20
#: characters a message or a listed row keeps
MAX_TEXT = 500

STATUSES = ("pass", "info", "fail", "could_not_run")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean(value, limit: int = MAX_TEXT) -> str:
    """``str(value)``, control characters escaped, cut to ``limit`` characters."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception as e:  # a __str__ that raises: say so instead
        text = f"<unprintable {type(value).__name__}: {type(e).__name__}>"
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                        else f"\\u{ord(m.group()):04x}", text)
    # lone surrogates cannot be printed or encoded: escape them too
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    return text


@dataclass
class Check:
    """One named check: its status and its findings."""

    name: str
    status: str = "pass"            # pass | info | fail | could_not_run
    findings: list[dict] = field(default_factory=list)
    #: could_not_run for a problem on this machine (not a missing privilege)
    local: bool = False
    #: wall seconds the check took (set by the runner; None when not run by it)
    elapsed_s: float | None = None

    def fail(self, obj: str, message: str, rows: list | None = None, count: int | None = None):
        self._add("fail", obj, message, rows, count)
        self.status = "fail"

    def info(self, obj: str, message: str, rows: list | None = None, count: int | None = None):
        self._add("info", obj, message, rows, count)
        if self.status == "pass":
            self.status = "info"

    def warn(self, obj: str, message: str, rows: list | None = None, count: int | None = None):
        """A finding of severity "warning": worth acting on, never a failure (the
        check's status is info)."""
        self._add("warning", obj, message, rows, count)
        if self.status == "pass":
            self.status = "info"

    def could_not_run(self, obj: str, message: str, *, local: bool = False):
        """The check did not run: ``message`` says why (it starts "could not run" or
        "could not check"); ``local``: a problem on this machine."""
        self._add("could_not_run", obj, message, None, None)
        if self.status != "fail":
            self.status = "could_not_run"
        self.local = self.local or local

    def _add(self, severity, obj, message, rows, count):
        f = {"severity": severity, "object": clean(obj), "message": clean(message, 4000)}
        if rows is not None:
            f["rows"] = [clean(r) for r in rows[:MAX_ROWS]]
            f["count"] = count if isinstance(count, int) else len(rows)
        self.findings.append(f)

    def as_dict(self) -> dict:
        d = {"name": self.name, "status": self.status, "findings": self.findings}
        if self.status == "could_not_run":
            d["local"] = self.local
        if self.elapsed_s is not None:
            d["elapsed_s"] = round(self.elapsed_s, 4)
        return d


@dataclass
class Report:
    """Every check that ran (or could not), in order."""

    checks: list[Check]
    #: wall seconds spent getting the reference of the definitions check (built
    #: on a throwaway server, or read from its cache); None when none was asked for
    reference_s: float | None = None

    @property
    def ok(self) -> bool:
        """No check failed (checks that could not run are listed, not failed)."""
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """1: a check failed; 5: none failed but one could not run for a local
        problem; 0: otherwise (a check a role may not run is reported, not failed)."""
        if not self.ok:
            return EXIT_FAILED
        if any(c.status == "could_not_run" and c.local for c in self.checks):
            return EXIT_LOCAL
        return EXIT_OK

    def by_name(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    def not_run(self, *, local: bool | None = None) -> list[str]:
        return [c.name for c in self.checks if c.status == "could_not_run"
                and (local is None or c.local == local)]

    def timings(self) -> dict[str, float]:
        """Seconds per check that was timed, by name, in the order they ran."""
        return {c.name: c.elapsed_s for c in self.checks if c.elapsed_s is not None}

    def as_dict(self) -> dict:
        d = {"ok": self.ok, "exit_code": self.exit_code,
             "could_not_run": self.not_run(),
             "checks": [c.as_dict() for c in self.checks]}
        if self.reference_s is not None:
            d["reference_s"] = round(self.reference_s, 4)
        return d


_LABEL = {"pass": "PASS", "info": "INFO", "fail": "FAIL", "could_not_run": "NO RUN"}


def summary(report: Report) -> str:
    """The last line: OK, OK with checks the role could not run, COULD NOT CHECK, FAILED."""
    failed, local, denied = (report.failed(), report.not_run(local=True),
                             report.not_run(local=False))
    if failed:
        line = f"verify: FAILED ({len(failed)} check(s): " + ", ".join(failed) + ")"
    elif local:
        line = ("verify: COULD NOT CHECK (a problem on this machine, not in the database: "
                + ", ".join(local) + ")")
    else:
        line = "verify: OK"
    if denied:
        line += ("; could not run (this role lacks a privilege): " + ", ".join(denied))
    return line


def render_table(report: Report) -> str:
    """The table ``harness verify`` prints: check, status, findings; then the summary."""
    lines = []
    w = max(len(c.name) for c in report.checks) if report.checks else 10
    lines.append(f"{'check'.ljust(w)}  status  detail")
    lines.append(f"{'-' * w}  ------  {'-' * 40}")
    for c in report.checks:
        label = _LABEL.get(c.status, c.status.upper())
        if not c.findings:
            lines.append(f"{c.name.ljust(w)}  {label:6}  ok")
            continue
        first = True
        for f in c.findings:
            head = f"{c.name.ljust(w)}  {label:6}" if first else " " * (w + 8)
            first = False
            detail = f"[{f['severity']}] {f['object']}: {f['message']}"
            if "rows" in f:
                more = f" (+{f['count'] - len(f['rows'])} more)" if f["count"] > len(f["rows"]) \
                    else ""
                detail += f" [{f['count']}] " + ", ".join(f["rows"]) + more
            lines.append(f"{head}  {detail}")
    lines.append("")
    lines.append(summary(report))
    return "\n".join(lines)
