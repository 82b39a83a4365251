"""harness bench at a tiny scale: every required figure is present, finite and positive.

Performance is reported, never asserted: no timing assertions here (only that
parts add up to no more than their whole). The one real run is made once, in
test_bench_json_has_every_figure, which checks all it produced (figures,
per-concern rows, verify's timings, the pictures and their redraw); the
plotter's handling of old and partial reports is tested on reports built here.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil

import psycopg
import pytest

from harness import bench, datagen, naive
from harness.apply import load_chain
from harness.bench import app as bench_app
from harness.bench import concerns, plots
from harness.bench import queue as bench_queue
from harness.bench.migration import lock_retry_time
from harness.errors import ServerUnavailable
from harness.verify import CHECKS

REQUIRED = (
    "max_blocking_lock_s", "app_worst_latency_s", "chain_vs_copy_ratio",
    "record_push_vs_insert_ratio", "queue_vs_procrastinate_ratio_w4",
    "queue_vs_procrastinate_ratio_w16", "chain_vs_jsonb_floor_ratio",
    "naive_max_blocking_lock_s", "naive_migration_s", "chain_vs_naive_ratio", "verify_s",
    "queue_cycles_per_s_w4",
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
    "chain_vs_naive_ratio", "verify_s", "verify_reference_s",
)
#: reported, finite, may be 0 (no lock retry at all on a quiet run)
NON_NEGATIVE = ("lock_retry_s", "naive_lock_retry_s")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes: int = 10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) >= min_bytes, (path, len(data))


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
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, out
    figures = json.loads(out)
    for key in REQUIRED:
        assert key in figures, key
    for key, value in figures.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value), key
    for key in POSITIVE:
        assert figures[key] > 0, (key, figures[key])
    for key in NON_NEGATIVE:
        assert figures[key] >= 0, (key, figures[key])
    assert figures["max_blocking_lock_s"] >= 0
    assert figures["scale"] == 2000
    assert figures["server_version"] // 10000 == pg_version
    assert figures["chain_vs_naive_ratio"] == pytest.approx(
        figures["migration_s"] / figures["naive_migration_s"])
    doc = json.loads(report.read_text())
    details = doc["details"]
    # the migration ran the whole chain with the simulated app and produced no app errors
    mig = details["migration"]
    assert mig["app_ops"] > 0
    assert mig["app_error_count"] == 0, mig["app_errors"]
    assert "V0009__verification_attempt_copy" in mig["file_times"]
    # the naive migration ran every one of its files on the copy
    assert list(details["naive"]["file_times"]) == [n for n, _ in naive.NAIVE_FILES]
    _check_runs(details)
    _check_per_concern(figures, details)
    _check_verify(figures, details)
    _check_pictures(report, captured.err, doc)


def _check_runs(details):
    """Spans, latency series, failures and lock-retry time of both runs."""
    for key in ("migration", "naive"):
        run = details[key]
        spans = run["file_spans"]
        assert [s["file"] for s in spans] == list(run["file_times"]), key
        for prev, span in zip([None] + spans, spans):
            assert 0 <= span["start_s"] <= span["end_s"] <= run["migration_s"] + 0.01, span
            if prev:
                assert span["start_s"] >= prev["end_s"] - 1e-3, (prev, span)
        series = run["latency_series"]
        n = len(series["t_s"])
        assert n == len(series["latency_s"]) == len(series["op"]) > 0, key
        assert n >= run["app_ops"]   # every op, and the report's reads too
        assert series["t_s"] == sorted(series["t_s"])
        assert all(0 <= i < len(series["ops"]) for i in series["op"])
        assert max(series["latency_s"]) == pytest.approx(run["app_worst_latency_s"], abs=1e-4)
        # every failed statement is listed with its time (connect errors have none)
        statement_errors = [e for e in run["app_errors"] if not e.startswith("connect")]
        assert len(run["failures"]) <= run["app_error_count"]
        if run["app_error_count"] <= len(run["app_errors"]):   # all errors are listed
            assert len(run["failures"]) == len(statement_errors), key
        assert all(f["latency_s"] >= 0 for f in run["failures"])
        assert run["lock_retry_s"] == pytest.approx(
            run["lock_retry_wait_s"] + run["lock_retry_backoff_s"], abs=2e-3)
    assert details["naive"]["lock_retries"] == 0   # no lock_timeout: it waits, never retries


def _check_per_concern(figures, details):
    rows = details["per_concern"]
    chain_times, naive_times = details["migration"]["file_times"], details["naive"]["file_times"]
    # every file of both runs is in exactly one row, and none is unmapped
    chain_files = [f for r in rows for f in r["chain_files"]]
    naive_files = [f for r in rows for f in r["naive_files"]]
    assert sorted(chain_files) == sorted(chain_times)
    assert sorted(naive_files) == sorted(naive_times)
    assert concerns.OTHER not in [r["concern"] for r in rows]
    for r in rows:
        assert r["chain_s"] == pytest.approx(sum(chain_times[f] for f in r["chain_files"]),
                                             abs=1e-3)
        assert r["naive_s"] == pytest.approx(sum(naive_times[f] for f in r["naive_files"]),
                                             abs=1e-3)
        if r["naive_s"] > 0:
            assert r["ratio"] == pytest.approx(r["chain_s"] / r["naive_s"])
        else:
            assert r["ratio"] is None
    # the files are parts of the run: together no longer than it (per-file times
    # are rounded to the ms)
    slack = 1e-3 * (len(chain_times) + len(naive_times))
    assert sum(r["chain_s"] for r in rows) <= figures["migration_s"] + slack
    assert sum(r["naive_s"] for r in rows) <= figures["naive_migration_s"] + slack


def _check_verify(figures, details):
    v = details["verify"]
    ran = [name for name, _fn, needs in CHECKS if needs is None or needs == "reference"]
    assert list(v["checks"]) == ran   # the reference was built: definitions ran too
    assert all(t >= 0 for t in v["checks"].values())
    assert sum(v["checks"].values()) <= figures["verify_s"]
    assert "reference_error" not in v
    assert figures["verify_reference_s"] == v["reference_s"] > 0


def _check_pictures(report, err, doc):
    latency, concerns_png = plots.plot_paths(report)
    assert latency == report.with_name("report-latency.png")
    assert concerns_png == report.with_name("report-concerns.png")
    for path in (latency, concerns_png):
        assert_png(path)
        assert f"wrote {path}" in err
    # redrawn from the saved report, elsewhere: the same two pictures
    copy = report.with_name("again.json")
    shutil.copy(report, copy)
    assert bench.plot_report(copy) == 0
    for path in plots.plot_paths(copy):
        assert_png(path)
    # the text output renders the per-concern table from the same details
    table = bench.render_table(doc["results"], doc["details"])
    assert "| concern | chain files |" in table
    for r in doc["details"]["per_concern"]:
        assert f"| {r['concern']} |" in table


# ---------------------------------------------------------------- without a server

def test_every_chain_file_and_naive_file_has_a_concern():
    names = [f.id for f in load_chain()] + [n for n, _ in naive.NAIVE_FILES]
    unmapped = [n for n in names if concerns.concern_of(n) == concerns.OTHER]
    assert unmapped == []
    assert concerns.concern_of("V0099__something_new") == concerns.OTHER


def test_per_concern_sums_each_side_and_puts_unknown_files_under_other():
    rows = concerns.per_concern(
        {"V0004__lab_version": 1.0, "V0005__lab_version_guards": 0.5,
         "V0099__something_new": 0.25},
        {"02_lab_version": 3.0, "01_lab_status_failed": 1.0})
    by = {r["concern"]: r for r in rows}
    assert by["lab versions"]["chain_s"] == 1.5 and by["lab versions"]["naive_s"] == 4.0
    assert by["lab versions"]["ratio"] == pytest.approx(0.375)
    assert by["other"]["chain_files"] == ["V0099__something_new"]
    assert by["other"]["ratio"] is None
    assert [r["concern"] for r in rows][-1] == "other"


def test_lock_retry_time_adds_each_failed_attempts_timeout_and_its_backoff():
    line = ("V0010__x: lock not available within lock_timeout {lt} (55P03: canceling "
            "statement due to lock timeout); blocked by pid 3 (...); retry {n}/40 in {d}s")
    got = lock_retry_time([line.format(lt="100ms", n=1, d="0.07"), "applied V0010__x",
                           line.format(lt="5min", n=2, d="0.13")])
    assert got == {"lock_retries": 2, "lock_retry_wait_s": 300.1,
                   "lock_retry_backoff_s": 0.2, "lock_retry_s": 300.3}
    assert lock_retry_time(["applied V0004__lab_version"])["lock_retry_s"] == 0


def _fake_report(with_new_fields: bool) -> dict:
    """A small report of the shape bench writes; without the fields of this round
    when ``with_new_fields`` is False (as reports written before it)."""
    chain_times = {"V0004__lab_version": 0.5, "V0009__verification_attempt_copy": 2.0}
    naive_times = {"02_lab_version": 0.25, "04_verification_attempt": 1.0}
    details = {"server_version_text": "18.6",
               "migration": {"migration_s": 3.0, "file_times": chain_times},
               "naive": {"migration_s": 1.5, "file_times": naive_times}}
    if with_new_fields:
        for key, times in (("migration", chain_times), ("naive", naive_times)):
            t, spans = 0.0, []
            for name, secs in times.items():
                spans.append({"file": name, "start_s": t, "end_s": t + secs})
                t += secs
            n = 400
            details[key].update(
                file_spans=spans,
                latency_series={"ops": ["a", "b"], "t_s": [i * 0.01 - 0.5 for i in range(n)],
                                "latency_s": [0.001 + (i % 7) * 0.01 for i in range(n)],
                                "op": [i % 2 for i in range(n)]},
                failures=[{"t_s": 0.3, "op": "a", "latency_s": 0.2}])
        details["per_concern"] = concerns.per_concern(chain_times, naive_times)
    return {"results": {"scale": 100, "server_version": 180006, "chain_vs_naive_ratio": 2.0},
            "details": details}


def _plot(doc, path):
    path.write_text(json.dumps(doc))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = bench.plot_report(path)
    return rc, err.getvalue()


def test_plotter_draws_both_pictures_of_a_full_report(tmp_path):
    rc, err = _plot(_fake_report(True), tmp_path / "full.json")
    assert rc == 0, err
    for path in plots.plot_paths(tmp_path / "full.json"):
        assert_png(path)
    assert "plot:" not in err   # nothing missing


def test_plotter_on_an_old_report_draws_what_it_can_and_says_what_is_missing(tmp_path):
    rc, err = _plot(_fake_report(False), tmp_path / "old.json")
    assert rc == 1   # the latency picture cannot be drawn
    latency, concerns_png = plots.plot_paths(tmp_path / "old.json")
    assert not latency.exists()
    assert_png(concerns_png)   # recomputed from the per-file times
    assert "no latency series" in err
    assert "recomputed from the per-file times" in err
    # no details at all: nothing drawn, said so, no crash
    rc, err = _plot({"results": {"scale": 100}}, tmp_path / "bare.json")
    assert rc == 1 and "no 'details'" in err
    assert not any(p.exists() for p in plots.plot_paths(tmp_path / "bare.json"))


def test_bench_plot_command_reads_a_saved_report_and_refuses_a_bad_one(tmp_path, capsys):
    from harness.cli import main
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(_fake_report(True)))
    assert main(["bench-plot", str(path)]) == 0
    for png in plots.plot_paths(path):
        assert_png(png)
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["bench-plot", str(tmp_path / "list.json")]) == 2
    assert main(["bench-plot", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


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
