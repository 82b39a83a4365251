"""harness bench at a tiny scale: every required figure is present, finite and positive.

Performance is reported, never asserted: no timing assertions here.
"""

from __future__ import annotations

import json
import math

import psycopg
import pytest

from harness import bench, datagen
from harness.bench import app as bench_app
from harness.bench import queue as bench_queue
from harness.errors import ServerUnavailable

REQUIRED = (
    "max_blocking_lock_s", "app_worst_latency_s", "chain_vs_copy_ratio",
    "record_push_vs_insert_ratio", "queue_vs_procrastinate_ratio_w4",
    "queue_vs_procrastinate_ratio_w16", "chain_vs_jsonb_floor_ratio",
    "naive_max_blocking_lock_s", "naive_migration_s", "queue_cycles_per_s_w4",
    "queue_cycles_per_s_w16", "procrastinate_cycles_per_s_w4", "procrastinate_cycles_per_s_w16",
    "scale", "server_version",
)
POSITIVE = (
    "app_worst_latency_s", "chain_vs_copy_ratio", "record_push_vs_insert_ratio",
    "queue_vs_procrastinate_ratio_w1", "queue_vs_procrastinate_ratio_w4",
    "queue_vs_procrastinate_ratio_w16", "migration_s", "copy_floor_s", "datagen_s",
    "jsonb_floor_s", "chain_vs_jsonb_floor_ratio", "record_push_pushes_per_s",
    "record_push_commits_per_s", "insert_ceiling_commits_per_s",
    "ledger_rows", "ledger_recompute_s", "ledger_recompute_rows_per_s", "ledger_sql_verify_s",
    "ledger_recompute_vs_sql_verify_ratio", "naive_migration_s", "scale", "server_version",
)


@pytest.mark.slow
def test_bench_json_has_every_figure(tmp_path, capsys, pg_version, monkeypatch):
    # on a throwaway server of the major under test, with the timing knobs of the
    # simulated app and of the queue comparison turned down: every phase still runs
    # and produces every figure (what this test checks), only sooner
    monkeypatch.setattr(bench_queue, "QUEUE_REPEATS", 1)
    monkeypatch.setattr(bench_app, "READER_HOLD_S", (0.2, 0.4))
    monkeypatch.setattr(bench_app, "READER_GAP_S", (0.05, 0.1))
    report = tmp_path / "report.json"
    rc = bench.run(None, 2000, True, report=str(report), version=pg_version)
    out = capsys.readouterr().out
    assert rc == 0, out
    figures = json.loads(out)
    for key in REQUIRED:
        assert key in figures, key
    for key, value in figures.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value), key
    for key in POSITIVE:
        assert figures[key] > 0, (key, figures[key])
    assert figures["max_blocking_lock_s"] >= 0
    assert figures["scale"] == 2000
    assert figures["server_version"] // 10000 == pg_version
    details = json.loads(report.read_text())["details"]
    # the migration ran the whole chain with the simulated app and produced no app errors
    mig = details["migration"]
    assert mig["app_ops"] > 0
    assert mig["app_error_count"] == 0, mig["app_errors"]
    assert "V0009__verification_attempt_copy" in mig["file_times"]
    # the naive migration ran every one of its files on the copy
    from harness import naive
    assert list(details["naive"]["file_times"]) == [n for n, _ in naive.NAIVE_FILES]


def test_required_keys_of_the_bench_are_the_published_figures():
    assert set(REQUIRED) <= set(bench.REQUIRED_KEYS)


def test_bench_without_a_server_raises_server_unavailable(tmp_path, monkeypatch):
    # a major whose binaries are not in the directory named for it
    monkeypatch.setenv("HARNESS_PG_BIN_14", str(tmp_path))
    with pytest.raises(ServerUnavailable, match="PostgreSQL 14"):
        bench.run(None, 2000, True, version=14)


def test_bench_on_an_unreachable_server_lets_the_psycopg_error_propagate():
    with pytest.raises(psycopg.OperationalError):
        bench.run("postgresql://nobody@127.0.0.1:1/x?connect_timeout=2", 2000, True)


def test_datagen_ids_are_deterministic():
    assert datagen.session_id(7) == datagen.session_id(7)
    assert datagen.session_id(7) != datagen.vlog_id(7)
    assert datagen.users_for(2000) == 20
    assert datagen.users_for(1_000_000) == 10_000
