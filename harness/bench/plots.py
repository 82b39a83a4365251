"""The bench's pictures, drawn from its report (the JSON of ``harness bench --report``).

:func:`draw` takes the report dict (fresh from :func:`harness.bench.run`, or
read back from a saved file by ``harness bench-plot REPORT.json``) and writes
two PNG files beside the report:

* ``<report>-latency.png``: every statement of the simulated application, its
  latency (log scale) against its start time, seconds from the start of the
  migration, during the pack's chain and during the naive change on the same
  axes; below them one strip per run with its files as bars coloured by
  concern (:mod:`.concerns`), the end of each run as a dashed line and each
  failed application statement as a cross;
* ``<report>-concerns.png``: the seconds per concern of the chain and of the
  naive change side by side, with chain / naive per concern.

A report written before these fields existed is drawn as far as it goes: the
per-concern times are recomputed from the per-file times when the report has
none, a run without its latency series is left out of the first picture (and
the picture is skipped when neither has one); :func:`draw` returns what it
could not draw, one line each, beside the paths it wrote.

Drawn with matplotlib (the ``bench`` extra), Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LocalProblem
from .concerns import CONCERNS, OTHER, concern_of, per_concern

#: the two runs: key in the report's details, label, colour
RUNS = (("migration", "pack's chain", "tab:blue"), ("naive", "naive change", "tab:red"))


def plot_paths(report_path: str | Path) -> tuple[Path, Path]:
    """``FILE.json`` -> (``FILE-latency.png``, ``FILE-concerns.png``), same directory."""
    p = Path(report_path)
    stem = p.with_suffix("") if p.suffix.lower() == ".json" else p
    return (stem.with_name(stem.name + "-latency.png"),
            stem.with_name(stem.name + "-concerns.png"))


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise LocalProblem("the bench pictures need matplotlib (the bench extra: "
                           "pip install -e '.[bench]')") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _concern_colours() -> dict[str, str]:
    names = list(dict.fromkeys(c for _, c in CONCERNS)) + [OTHER]
    palette = ["tab:purple", "tab:orange", "tab:green", "tab:brown", "tab:pink",
               "tab:olive", "tab:cyan", "tab:gray", "gold", "navy", "lightgray"]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _short(name: str) -> str:
    """V0009__verification_attempt_copy -> V0009; 04_verification_attempt -> 04."""
    return name.split("_", 1)[0]


def _latency(plt, details: dict, path: Path, title: str, missing: list[str]) -> bool:
    runs = []
    for key, label, colour in RUNS:
        run = details.get(key)
        if not isinstance(run, dict):
            missing.append(f"latency: no '{key}' run in the report")
            continue
        series = run.get("latency_series")
        if not series or not series.get("t_s"):
            missing.append(f"latency: the {label} has no latency series (a report written "
                           "before the bench kept one); left out")
            continue
        if not run.get("file_spans"):
            missing.append(f"latency: the {label} has no file spans; its files are not marked")
        runs.append((key, label, colour, run, series))
    if not runs:
        missing.append("latency picture not drawn: no run has a latency series")
        return False
    colours = _concern_colours()
    # a bar narrower than 3% of the longest run gets no label (they would overlap)
    room = 0.03 * max([s["end_s"] for *_, run, _ in runs for s in run.get("file_spans") or []]
                      + [r.get("migration_s") or 0 for *_, r, _ in runs] + [1e-9])
    fig, axes = plt.subplots(1 + len(runs), 1, sharex=True, figsize=(15, 5.5 + 0.9 * len(runs)),
                             gridspec_kw={"height_ratios": [6] + [1] * len(runs)})
    ax = axes[0]
    used: dict[str, str] = {}
    for i, (key, label, colour, run, series) in enumerate(runs):
        ax.scatter(series["t_s"], [max(x, 1e-5) for x in series["latency_s"]], s=4,
                   color=colour, alpha=0.45, linewidths=0, rasterized=True,
                   label=f"{label}: app statement ({len(series['t_s'])})")
        end = run.get("migration_s")
        if isinstance(end, (int, float)):
            for a in axes:
                a.axvline(end, color=colour, linestyle="--", linewidth=1)
            ax.plot([], [], color=colour, linestyle="--", label=f"{label} ends ({end:.1f} s)")
        fails = run.get("failures")
        if fails:   # where they failed; at the top when the report has no latency for them
            timed = [f for f in fails if isinstance(f.get("latency_s"), (int, float))]
            if timed:
                ax.scatter([f["t_s"] for f in timed], [max(f["latency_s"], 1e-5) for f in timed],
                           marker="x", s=36, color=colour, linewidths=1.2, zorder=3,
                           label=f"{label}: failed statement ({len(fails)})")
            untimed = [f for f in fails if not isinstance(f.get("latency_s"), (int, float))]
            if untimed:
                ax.scatter([f["t_s"] for f in untimed], [0.97] * len(untimed), marker="x",
                           s=36, color=colour, transform=ax.get_xaxis_transform(),
                           clip_on=False, label=None if timed else
                           f"{label}: failed statement ({len(fails)};\nno latency in the "
                           "report: drawn at the top)")
        elif fails is None:
            missing.append(f"latency: the {label} has no list of failed statements")
        strip = axes[1 + i]
        for span in run.get("file_spans") or []:
            concern = concern_of(span["file"])
            used[concern] = colours.get(concern, "lightgray")
            width = span["end_s"] - span["start_s"]
            strip.broken_barh([(span["start_s"], width)], (0.1, 0.8),
                              facecolors=used[concern], edgecolor="black", linewidth=0.4)
            if width >= room:
                strip.text(span["start_s"] + width / 2, 0.5, _short(span["file"]),
                           ha="center", va="center", fontsize=7, clip_on=True)
        strip.set_yticks([])
        strip.set_ylim(0, 1)
        strip.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("application statement latency (s, log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=2,
              borderaxespad=0, title="application statements", title_fontsize=8)
    axes[-1].set_xlabel("seconds since the migration started (the app starts 0.5 s before)")
    if used:
        from matplotlib.patches import Patch
        fig.legend(handles=[Patch(facecolor=c, edgecolor="black", label=n)
                            for n, c in used.items()],
                   loc="lower left", bbox_to_anchor=(0.795, 0.03), fontsize=8,
                   title="files, by concern\n(bar labels: file version)", title_fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.78, top=0.94, bottom=0.08, hspace=0.12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _concern_rows(details: dict, missing: list[str]) -> list[dict]:
    rows = details.get("per_concern")
    if rows:
        return rows
    mig, nv = details.get("migration") or {}, details.get("naive") or {}
    if not (mig.get("file_times") or nv.get("file_times")):
        missing.append("concerns picture not drawn: no per-file times in the report")
        return []
    missing.append("concerns: no per_concern rows in the report; recomputed from the "
                   "per-file times")
    return per_concern(mig.get("file_times") or {}, nv.get("file_times") or {})


def _concerns(plt, details: dict, path: Path, title: str, missing: list[str]) -> bool:
    rows = _concern_rows(details, missing)
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.55 * len(rows)))
    ys = range(len(rows))
    h = 0.38
    top = max([r["chain_s"] for r in rows] + [r["naive_s"] for r in rows] + [1e-9])
    for off, side, (_, label, colour) in ((-h / 2, "chain", RUNS[0]), (h / 2, "naive", RUNS[1])):
        vals = [r[f"{side}_s"] for r in rows]
        ax.barh([y + off for y in ys], vals, height=h, color=colour, label=label)
        for y, v, r in zip(ys, vals, rows):
            files = r.get(f"{side}_files") or []
            text = f"{v:.2f} s" if files else "no file" + (
                f" ({r['note']})" if side == "naive" and r.get("note") else "")
            ax.text(v + top * 0.01, y + off, text, va="center", fontsize=7)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r["concern"] + ("" if r.get("ratio") is None
                                        else f"\nchain/naive {r['ratio']:.2f}") for r in rows],
                       fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.18)
    ax.set_xlabel("seconds (sum of the concern's files)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw(report: dict, report_path: str | Path) -> tuple[list[Path], list[str]]:
    """Draw both pictures of ``report`` beside ``report_path``; return (paths
    written, what could not be drawn or is missing from the report)."""
    plt = _pyplot()
    missing: list[str] = []
    details = report.get("details") if isinstance(report, dict) else None
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(details, dict):
        return [], ["nothing drawn: the report has no 'details' object"]
    results = results if isinstance(results, dict) else {}
    head = (f"harness bench, scale {results.get('scale', '?')}, "
            f"PostgreSQL {details.get('server_version_text', results.get('server_version', '?'))}")
    ratio = results.get("chain_vs_naive_ratio")
    latency_path, concerns_path = plot_paths(report_path)
    written = []
    if _latency(plt, details, latency_path, f"{head}: application latency during each "
                "migration", missing):
        written.append(latency_path)
    sub = f" (whole runs: chain / naive {ratio:.2f})" if isinstance(ratio, (int, float)) else ""
    if _concerns(plt, details, concerns_path, f"{head}: seconds per concern{sub}", missing):
        written.append(concerns_path)
    return written, missing
