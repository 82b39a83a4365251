"""What verify reports: a :class:`Check` per named check, the :class:`Report`, its table."""

from __future__ import annotations

from dataclasses import dataclass, field

#: rows a finding lists (the count says how many there are in all)
MAX_ROWS = 20


@dataclass
class Check:
    """One named check: pass, fail or info, and its findings."""

    name: str
    status: str = "pass"            # pass | fail | info
    findings: list[dict] = field(default_factory=list)

    def fail(self, obj: str, message: str, rows: list | None = None, count: int | None = None):
        self._add("fail", obj, message, rows, count)
        self.status = "fail"

    def info(self, obj: str, message: str, rows: list | None = None, count: int | None = None):
        self._add("info", obj, message, rows, count)
        if self.status == "pass":
            self.status = "info"

    def _add(self, severity, obj, message, rows, count):
        f = {"severity": severity, "object": obj, "message": message}
        if rows is not None:
            f["rows"] = [str(r) for r in rows[:MAX_ROWS]]
            f["count"] = count if count is not None else len(rows)
        self.findings.append(f)

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "findings": self.findings}


@dataclass
class Report:
    """Every check that ran, in the order it ran."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def by_name(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def render_table(report: Report) -> str:
    """The table ``harness verify`` prints: check, status, findings; then OK or FAILED."""
    lines = []
    w = max(len(c.name) for c in report.checks) if report.checks else 10
    lines.append(f"{'check'.ljust(w)}  status  detail")
    lines.append(f"{'-' * w}  ------  {'-' * 40}")
    for c in report.checks:
        if not c.findings:
            lines.append(f"{c.name.ljust(w)}  {c.status.upper():6}  ok")
            continue
        first = True
        for f in c.findings:
            head = f"{c.name.ljust(w)}  {c.status.upper():6}" if first else " " * (w + 8)
            first = False
            detail = f"[{f['severity']}] {f['object']}: {f['message']}"
            if "rows" in f:
                more = f" (+{f['count'] - len(f['rows'])} more)" if f["count"] > len(f["rows"]) \
                    else ""
                detail += f" [{f['count']}] " + ", ".join(f["rows"]) + more
            lines.append(f"{head}  {detail}")
    n_fail = len(report.failed())
    lines.append("")
    lines.append("verify: OK" if report.ok else f"verify: FAILED ({n_fail} check(s): "
                 + ", ".join(report.failed()) + ")")
    return "\n".join(lines)
