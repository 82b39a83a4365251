"""One bench run on one server: every phase in order, and the server's settings."""

from __future__ import annotations

import os
import time

import psycopg
from psycopg import sql as pgsql

from .. import datagen
from .common import SAMPLE_INTERVAL, WORKER_COUNTS, _connect, _say, _with_db, machine_info
from .concerns import per_concern
from .floors import copy_floor, jsonb_floor
from .recompute import bench_ledger_recompute
from .migration import _app_dsn, _apply_naive, _Progress, run_migration
from .push import bench_push_sizes, bench_record_push
from .queue import bench_queue


def _server_setup(cluster) -> None:
    with cluster.connect() as conn:
        for k, v in (("shared_buffers", "1GB"), ("max_wal_size", "8GB"),
                     ("maintenance_work_mem", "512MB"), ("work_mem", "32MB"),
                     ("checkpoint_timeout", "15min")):
            conn.execute(f"ALTER SYSTEM SET {k} = '{v}'")
    cluster.pg_ctl("restart", "-w", "-m", "fast", "-t", "120")


def _prepare(admin, server_dsn: str, tag: str, scale: int, echo: bool, cleanup: list,
             results: dict, details: dict) -> tuple[str, str, str, str]:
    """Two new databases, the baseline schema, the data, and a copy of it for the naive run."""
    from .. import apply as A
    db, pdb = f"forgea_bench_{tag}", f"procrastinate_bench_{tag}"
    results["server_version"] = int(admin.execute("SHOW server_version_num").fetchone()[0])
    details["server_version_text"] = admin.execute("SHOW server_version").fetchone()[0]
    for d in (db, pdb):
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(d)))
        cleanup.append(("db", d))
    dsn = _with_db(server_dsn, db)
    A.apply(dsn, A.load_chain()[1].id, err=_Progress(False))   # the baseline + roles
    app_dsn, details["app_role"] = _app_dsn(dsn, admin, cleanup)
    _say(f"generating scale {scale} ...")
    gen = datagen.generate(dsn, scale, log=_say if echo else None)
    results["datagen_s"] = gen["total_s"]
    details["datagen"] = gen
    naive_db = f"forgea_naive_{tag}"   # the same data, for the naive migration
    admin.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        pgsql.Identifier(naive_db), pgsql.Identifier(db)))
    cleanup.append(("db", naive_db))
    return dsn, _with_db(server_dsn, pdb), app_dsn, naive_db


def _migrations(server_dsn: str, dsn: str, app_dsn: str, naive_db: str, scale: int,
                echo: bool, results: dict, details: dict) -> None:
    """The floors, the pack's chain and the naive migration, each under the app."""
    results["copy_floor_s"] = copy_floor(dsn)
    results["jsonb_floor_s"] = jsonb_floor(dsn)
    _say(f"copy floor {results['copy_floor_s']:.2f}s, with jsonb {results['jsonb_floor_s']:.2f}s;"
         " migration chain with the app running ...")
    mig = run_migration(dsn, app_dsn, scale, echo)
    results["migration_s"] = mig["migration_s"]
    results["chain_vs_copy_ratio"] = mig["migration_s"] / results["copy_floor_s"]
    results["migration_vs_copy_ratio"] = results["chain_vs_copy_ratio"]
    results["chain_vs_jsonb_floor_ratio"] = mig["migration_s"] / results["jsonb_floor_s"]
    for k in ("max_blocking_lock_s", "app_worst_latency_s", "app_p99_latency_s", "app_ops",
              "app_error_count"):
        results[k] = mig[k]
    details["migration"] = mig
    _say(f"migration {mig['migration_s']:.1f}s; worst app latency "
         f"{mig['app_worst_latency_s']:.3f}s; longest block {mig['max_blocking_lock_s']:.3f}s")
    _say("the naive migration (one transaction per file, as prisma migrate) on a copy ...")
    nv = run_migration(_with_db(server_dsn, naive_db), _with_db(app_dsn, naive_db), scale,
                       echo, runner=_apply_naive)
    results["naive_migration_s"] = nv["migration_s"]
    results["naive_max_blocking_lock_s"] = nv["max_blocking_lock_s"]
    results["naive_app_worst_latency_s"] = nv["app_worst_latency_s"]
    results["naive_app_error_count"] = nv["app_error_count"]
    results["naive_vs_chain_migration_ratio"] = (
        nv["migration_s"] / mig["migration_s"] if mig["migration_s"] else 0.0)
    results["chain_vs_naive_ratio"] = (
        mig["migration_s"] / nv["migration_s"] if nv["migration_s"] else float("nan"))
    results["lock_retry_s"] = mig["lock_retry_s"]
    results["naive_lock_retry_s"] = nv["lock_retry_s"]
    details["naive"] = nv
    details["per_concern"] = per_concern(mig["file_times"], nv["file_times"])
    # what no file's time holds: apply's pre-flight (the data pre-conditions, read
    # before anything commits), connecting, the bookkeeping between files
    results["chain_outside_files_s"] = mig["migration_s"] - sum(mig["file_times"].values())
    _say(f"naive migration {nv['migration_s']:.1f}s; longest block "
         f"{nv['max_blocking_lock_s']:.3f}s; app errors {nv['app_error_count']}")


def bench_verify(dsn: str) -> dict:
    """harness verify on the migrated database, timed: its reference built on a
    throwaway server as on verify's first run (the cache of earlier builds is not
    read, so the figure does not depend on what ran before), then every check."""
    from .. import verify as V
    with psycopg.connect(dsn, autocommit=True, application_name="harness-verify") as conn:
        t0 = time.monotonic()
        ref = V.build_reference(conn, cache=False)
        reference_s = time.monotonic() - t0
        t1 = time.monotonic()
        report = V.run_checks(conn, reference_snapshot=ref)
        checks_s = time.monotonic() - t1
    out = {"checks_s": checks_s, "reference_s": reference_s, "checks": report.timings(),
           "ok": report.ok, "failed": report.failed(), "could_not_run": report.not_run(),
           "findings": {c.name: c.findings[:3] for c in report.checks
                        if c.status in ("fail", "could_not_run")}}
    if "error" in ref:
        out["reference_error"] = ref["error"]
    return out


def _verify(dsn: str, results: dict, details: dict) -> None:
    _say("harness verify on the migrated database (its reference built first) ...")
    v = bench_verify(dsn)
    details["verify"] = v
    results["verify_s"] = v["checks_s"]
    if "reference_error" in v:   # the time it took to fail is no reference build time
        _say(f"verify: no reference: {v['reference_error']}")
    else:
        results["verify_reference_s"] = v["reference_s"]
    slowest = sorted(v["checks"].items(), key=lambda kv: -kv[1])[:3]
    _say(f"verify {v['checks_s']:.1f}s (" + ", ".join(f"{k} {s:.2f}s" for k, s in slowest)
         + f"), reference {v['reference_s']:.1f}s; "
         + ("OK" if v["ok"] else f"FAILED: {', '.join(v['failed'])}"))


def _apis(dsn: str, pdsn: str, scale: int, results: dict, details: dict) -> None:
    """The queue, record_push (throughput and per-size cost) and the ledger recomputation."""
    small = scale < 20000
    q = bench_queue(dsn, pdsn, 0.5 if small else 3.0, 60 if small else 400,
                    25 if small else 120)
    results.update(q)
    _say("queue: " + ", ".join(f"w{w} {q[f'queue_cycles_per_s_w{w}']:.0f}/s vs "
                               f"{q[f'procrastinate_cycles_per_s_w{w}']:.0f}/s"
                               for w in WORKER_COUNTS))
    rp = bench_record_push(dsn, 1.5 if small else 10.0)
    results.update(rp)
    _say(f"record_push {rp['record_push_commits_per_s']:.0f} commits/s vs insert ceiling "
         f"{rp['insert_ceiling_commits_per_s']:.0f}/s")
    sizes = bench_push_sizes(dsn, 3 if small else 15)
    details["record_push_sizes"] = sizes.pop("breakdown")
    results.update(sizes)
    _say("record_push of 1/20/100 commits: " + ", ".join(
        f"{results[f'record_push_ms_{n}']:.1f} ms" for n in (1, 20, 100)))
    lr = bench_ledger_recompute(dsn, min(scale, 1_000_000))
    results.update(lr)
    _say(f"ledger: {lr['ledger_rows']} rows recomputed in Python in "
         f"{lr['ledger_recompute_s']:.1f}s ({lr['ledger_recompute_rows_per_s']:.0f} rows/s), "
         f"verify_lab_attempt_chain() {lr['ledger_sql_verify_s']:.1f}s")


def _cleanup(admin, cleanup: list) -> None:
    for kind, name in reversed(cleanup):
        try:
            if kind == "db":
                admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    pgsql.Identifier(name)))
            else:
                admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(
                    pgsql.Identifier(name)))
        except psycopg.Error as e:
            _say(f"cleanup of {kind} {name} failed: {e}")


def measure(server_dsn: str, scale: int, *, echo: bool = True, keep: bool = False) -> dict:
    """Run every phase on the server of ``server_dsn`` (a maintenance DSN)."""
    tag = f"{os.getpid()}_{int(time.time())}"
    cleanup: list = []
    results: dict = {"scale": scale}
    details: dict = {}
    admin = _connect(server_dsn, "bench-admin")
    try:
        dsn, pdsn, app_dsn, naive_db = _prepare(admin, server_dsn, tag, scale, echo, cleanup,
                                                results, details)
        _migrations(server_dsn, dsn, app_dsn, naive_db, scale, echo, results, details)
        _verify(dsn, results, details)
        _apis(dsn, pdsn, scale, results, details)
        results.update(machine_info())
        results["sample_interval_s"] = SAMPLE_INTERVAL
    finally:
        if not keep:
            _cleanup(admin, cleanup)
        admin.close()
    return {"results": results, "details": details}
