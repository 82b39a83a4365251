"""``harness bench``: the pack at production scale, against floors and references.

One run, one server, in this order:

1. a fresh database at the baseline (``V0001`` + ``V0002__roles_and_archive``), filled by
   :mod:`harness.datagen` at scale N (N LabSession, N VerificationLog, 10N
   AuditLog rows); ``datagen_s``;
2. the copy floor: ``INSERT ... SELECT`` of LabSession, VerificationLog (into a
   plain text copy, no jsonb) and AuditLog into unindexed, unconstrained tables
   (``copy_floor_s``; the copies are dropped again). A second, wider floor
   (``jsonb_floor_s``) also writes every VerificationLog text as new jsonb
   (``to_jsonb``) into an unindexed table: the part of V0009's cost that any
   conversion pays, because the plain copy reuses the compressed TOAST values
   as they are while new jsonb must be compressed and written again
   (``chain_vs_jsonb_floor_ratio``);
3. the whole chain ``V0003..end`` through :func:`harness.apply.apply`
   (``migration_s``) while a simulated application (3 threads, own connections,
   as a LOGIN member of ``forgea_app`` when the bench may create one, else as the
   owner; ``lock_timeout`` 0) inserts sessions with the app's columns, updates
   ``lastActivityAt``, reads VerificationLog by id and inserts AuditLog rows,
   timing every statement, while a fourth app connection plays a long-running
   report: it reads LabSession in a transaction and stays idle in it (holding
   ACCESS SHARE on LabSession) for ``READER_HOLD_S`` seconds, then commits and
   pauses ``READER_GAP_S``, over and over (the migration's ACCESS EXCLUSIVE
   requests queue behind it, and every app statement on LabSession behind
   those: what the short, retried lock_timeout of the harness bounds); a
   monitor samples ``pg_stat_activity`` /
   ``pg_locks`` / ``pg_blocking_pids`` every ~20 ms and records, for each app
   statement waiting on a lock held or queued by the migration session
   (``application_name = 'harness'``, directly or through a chain of waiters),
   how long it has been waiting, which migration file and statement was running
   and which lock it waited for (``max_blocking_lock_s``);
4. the queue: enqueue + claim + complete cycles per second with 1, 4 and 16
   worker threads, against procrastinate 3.x doing defer + fetch + finish with
   the same per-session ordering (procrastinate's ``lock`` = the session) in a
   second database on the same cluster (its own schema.sql, driven through its
   SQL procedures ``procrastinate_defer_jobs_v1`` / ``procrastinate_fetch_job_v2``
   / ``procrastinate_finish_job_v1``, exactly what its job manager sends); both
   databases are vacuumed first, then for each worker count the two queues run
   alternately, ``QUEUE_REPEATS`` rounds each, and the median round is reported
   (single rounds moved by +-30% on 2 cores);
5. ``record_push``: 4 connections pushing 5 commits at a time to 200 sessions
   made with ``create_lab_session``, against multi-row INSERTs of the very same
   LabAttempt rows (5 per statement, same 4 connections) into
   ``CREATE TABLE ... (LIKE "LabAttempt")`` (no indexes, checks or triggers).

Without a DSN :func:`run` starts a throwaway cluster of the major ``version``
(18 unless told; any of 18, 17, 16, 15), with fsync and synchronous_commit off
and shared_buffers 1GB, and destroys it afterwards; with a DSN it creates new
databases on that server (needs CREATEDB) and drops them at the end (``keep``
keeps them). The click command ``harness bench`` (harness/cli.py) calls
:func:`run`.

Performance is reported, never asserted. ``json_output`` prints one flat object
of numbers; ``report=FILE`` also writes the details (per-file migration times and
spans, the per-concern times of the chain and of the naive change, every app
statement's latency and each failed one, the blocking episodes with their
statements and locks, verify's time per check) as JSON, and draws two pictures
beside it (:mod:`.plots`; ``harness bench-plot FILE`` redraws them).

After the two migrations the bench runs ``harness verify`` on the migrated
database (``verify_s``, each check in ``details["verify"]["checks"]``), after
building its reference on a throwaway server as verify's first run does
(``verify_reference_s``).

The modules, one job each: :mod:`.common` (connections, constants, sessions and
pushes), :mod:`.app` (the simulated application and the lock-wait monitor),
:mod:`.floors`, :mod:`.migration` (the chain or the naive migration under load),
:mod:`.push` (record_push), :mod:`.queue`, :mod:`.recompute` (the ledger
recomputation), :mod:`.concerns` (which concern each file serves), :mod:`.plots`
(the pictures) and :mod:`.measure` (the phases in order).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import LocalProblem, ServerUnavailable
from .common import WORKER_COUNTS, _say
from .concerns import render_concerns
from .measure import _server_setup, measure

__all__ = ["REQUIRED_KEYS", "measure", "plot_report", "render_table", "run"]

#: every figure a run must report, finite, or it exits 1
REQUIRED_KEYS = (
    "max_blocking_lock_s", "app_worst_latency_s", "chain_vs_copy_ratio",
    "chain_vs_jsonb_floor_ratio", "naive_max_blocking_lock_s", "naive_migration_s",
    "chain_vs_naive_ratio", "verify_s", "record_push_vs_insert_ratio", "queue_vs_procrastinate_ratio_w4",
    "queue_vs_procrastinate_ratio_w16", "queue_cycles_per_s_w4", "queue_cycles_per_s_w16",
    "procrastinate_cycles_per_s_w4", "procrastinate_cycles_per_s_w16",
    "scale", "server_version",
)

_TABLE_KEYS = (
    "datagen_s", "copy_floor_s", "jsonb_floor_s", "migration_s", "chain_vs_copy_ratio",
    "chain_vs_jsonb_floor_ratio", "max_blocking_lock_s", "naive_migration_s",
    "chain_vs_naive_ratio", "lock_retry_s", "naive_lock_retry_s", "chain_outside_files_s",
    "naive_max_blocking_lock_s", "naive_app_worst_latency_s", "naive_app_error_count",
    "app_worst_latency_s", "app_p99_latency_s", "record_push_pushes_per_s",
    "record_push_commits_per_s", "insert_ceiling_commits_per_s", "record_push_vs_insert_ratio",
    "record_push_ms_1", "record_push_ms_20", "record_push_ms_100",
    "ledger_rows", "ledger_recompute_s", "ledger_recompute_rows_per_s", "ledger_sql_verify_s",
    "ledger_recompute_vs_sql_verify_ratio", "verify_s", "verify_reference_s",
)


def _blocking_lines(details: dict) -> list[str]:
    out = []
    mig = details.get("migration", {})
    wb = mig.get("worst_blocking")
    if wb:
        out.append("")
        out.append(f"longest block: {wb['blocked_s']:.3f}s in {wb['migration_file']}: app "
                   f"waited for {wb['waits_for']} (migration holds: "
                   f"{', '.join(wb['migration_locks']) or '?'})")
        out.append(f"  migration statement: {wb['migration_statement'][:200]!r}")
        out.append(f"  app statement: {wb['app_statement'][:120]!r}")
    if mig.get("app_worst_op"):
        out.append(f"worst app statement: {mig['app_worst_op']} "
                   f"({mig['app_worst_latency_s']:.3f}s)")
    return out


def render_table(r: dict, details: dict | None = None) -> str:
    rows = [("scale", r["scale"]), ("server_version", r["server_version"]),
            ("cpu_cores / ram_gb", f"{r.get('cpu_cores')} / {r.get('ram_gb')}")]
    rows += [(k, r.get(k)) for k in _TABLE_KEYS]
    for w in WORKER_COUNTS:
        rows += [(f"{p}_w{w}", r.get(f"{p}_w{w}")) for p in
                 ("queue_cycles_per_s", "procrastinate_cycles_per_s",
                  "queue_vs_procrastinate_ratio")]
    out = ["| figure | value |", "|---|---|"]
    for k, v in rows:
        out.append(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
    if details:
        out += _blocking_lines(details)
        if details.get("per_concern"):
            out += ["", "per concern (seconds; the naive change on a copy of the same data):"]
            out += render_concerns(details["per_concern"])
        checks = (details.get("verify") or {}).get("checks")
        if checks:
            slow = sorted(checks.items(), key=lambda kv: -kv[1])[:5]
            out += ["", "verify, slowest checks: "
                    + ", ".join(f"{k} {v:.3f}s" for k, v in slow)]
    return "\n".join(out)


def _measure_on(dsn: str | None, scale: int, keep: bool, version: int) -> dict:
    """measure() on ``dsn``, or on a throwaway cluster of ``version`` destroyed afterwards."""
    if dsn is not None:
        return measure(dsn, scale, echo=True, keep=keep)
    from .. import servers
    _say(f"starting a throwaway PostgreSQL {version} cluster ...")
    try:
        cluster = servers.start_throwaway(version)
    except (servers.ServerNotFound, servers.ServerError) as e:
        raise ServerUnavailable(
            f"cannot start a throwaway PostgreSQL {version}: {str(e).splitlines()[0]}") from e
    try:
        _server_setup(cluster)
        return measure(cluster.dsn(), scale, echo=True, keep=keep)
    finally:
        cluster.destroy()


def _draw(doc: dict, report: str | Path) -> list[Path]:
    from .plots import draw
    written, missing = draw(doc, report)
    for line in missing:
        _say(f"plot: {line}")
    for path in written:
        _say(f"wrote {path}")
    return written


def plot_report(report: str | Path) -> int:
    """``harness bench-plot``: the pictures of a saved report, redrawn beside it;
    0 when both were drawn, 1 when one or both could not be (the reasons on stderr).
    An unreadable file or one that is no JSON object raises UsageError."""
    from ..errors import UsageError
    try:
        doc = json.loads(Path(report).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"bench-plot: cannot read {report}: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"bench-plot: {report} is not a bench report (no JSON object)")
    return 0 if len(_draw(doc, report)) == 2 else 1


def run(dsn: str | None, scale: int, json_output: bool, *, report: str | None = None,
        keep: bool = False, version: int = 18) -> int:
    """Run the bench; 0 when every figure of REQUIRED_KEYS is there and finite, else 1.

    Raises :class:`harness.errors.ServerUnavailable` when no server can be
    started; psycopg errors propagate (the cli translates both)."""
    out = _measure_on(dsn, scale, keep, version)
    res = out["results"]
    if report:
        Path(report).write_text(json.dumps(out, indent=2, default=str) + "\n")
        # drawn from the report as written, exactly what bench-plot redraws
        try:
            _draw(json.loads(Path(report).read_text()), report)
        except LocalProblem as e:   # the run is measured and saved: say so, go on
            _say(f"pictures not drawn: {e}; harness bench-plot {report} draws them later")
    if json_output:
        print(json.dumps({k: v for k, v in res.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)}, indent=2))
    else:
        print(render_table(res, out["details"]))
    bad = [k for k in REQUIRED_KEYS if not isinstance(res.get(k), (int, float))
           or not math.isfinite(res[k])]
    if bad:
        _say(f"missing figures: {', '.join(bad)}")
        return 1
    return 0
