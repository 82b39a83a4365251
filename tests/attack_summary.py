"""The attack summary: one row per attack category, printed at the end of the run.

A plugin loaded by the root conftest (``pytest_plugins``), so that with
pytest-xdist the controller, which sees every worker's reports, prints it.
A test under ``tests/attacks/`` is one attack: passed = blocked, failed or
errored = succeeded. The table is also written to ``.harness/attack-summary.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_outcome: dict[str, tuple[str, bool]] = {}   # nodeid -> (category, blocked)


def pytest_runtest_logreport(report):
    """One outcome per attack: blocked only if setup, call and teardown all passed."""
    nodeid = report.nodeid.replace("\\", "/")
    if "attacks/" not in nodeid or report.skipped:
        return
    cat = Path(nodeid.split("::")[0]).stem[5:].replace("hostile_input", "input")
    blocked = _outcome.get(nodeid, (cat, True))[1] and report.passed
    _outcome[nodeid] = (cat, blocked)


def _results() -> dict[str, dict[str, int]]:
    res: dict[str, dict[str, int]] = defaultdict(
        lambda: {"tried": 0, "blocked": 0, "succeeded": 0})
    for cat, blocked in _outcome.values():
        res[cat]["tried"] += 1
        res[cat]["blocked" if blocked else "succeeded"] += 1
    return res


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = _results()
    if not results:
        return
    version = config.getoption("--pg-version", default=None)
    tr = terminalreporter
    tr.section(f"attack summary (PostgreSQL {version})")
    tr.write_line(f"{'category':<12} {'tried':>6} {'blocked':>8} {'succeeded':>10}")
    tot = {"tried": 0, "blocked": 0, "succeeded": 0}
    for cat in sorted(results):
        r = results[cat]
        for k in tot:
            tot[k] += r[k]
        tr.write_line(f"{cat:<12} {r['tried']:>6} {r['blocked']:>8} {r['succeeded']:>10}")
    tr.write_line(f"{'total':<12} {tot['tried']:>6} {tot['blocked']:>8} {tot['succeeded']:>10}")
    out = REPO / ".harness"
    try:
        out.mkdir(exist_ok=True)
        (out / "attack-summary.json").write_text(json.dumps({
            "pg_version": version,
            "categories": {k: dict(v) for k, v in sorted(results.items())},
            "total": tot}, indent=2) + "\n")
    except OSError:
        pass


