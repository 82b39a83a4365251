"""Which concern of the schema change each migration file serves, chain and naive alike.

``harness bench`` times every file of the pack's chain (``V00NN__name``) and of
the naive migration (:data:`harness.naive.NAIVE_FILES`); :func:`per_concern`
adds them up per concern, so that the two ways of making the same change can be
compared part by part. A file is matched by a substring of its name (the first
row that matches wins), never by its version number, so a renumbered file keeps
its concern; a file no row matches counts under ``"other"`` (tests/test_bench.py
fails when a file of the chain or of the naive migration is unmapped).

The naive ``03_lab_session_columns`` adds the columns, backfills them, sets NOT
NULL, adds the foreign key and builds the one-active unique index in one
transaction, so the chain's files that do the same (columns, backfill,
constraints, their validation, NOT NULL, the one-active index) form one concern
with it: "LabSession columns". A file of guards (triggers) counts with the
concern it guards.
"""

from __future__ import annotations

#: (name substring, concern), in the order the concerns are listed
CONCERNS: tuple[tuple[str, str], ...] = (
    ("__baseline", "baseline"),                     # applied before the bench times anything
    ("__roles_and_archive", "baseline"),
    ("legacy_append_only", "legacy tables append-only"),
    ("lab_version", "lab versions"),
    ("lab_status_failed", "lab versions"),           # naive 01; the chain's V0004 does it
    ("lab_session_columns", "LabSession columns"),   # before verification_attempt
    ("lab_session_backfill", "LabSession columns"),
    ("lab_session_and_attempt_guards", "LabSession columns"),   # their guards
    ("verification_attempt", "verification attempt copy"),
    ("lab_session_constraints", "LabSession columns"),      # and ..._constraints_validate
    ("lab_session_version_not_null", "LabSession columns"),
    ("lab_session_one_active", "LabSession columns"),
    ("github_repo_mapping", "repository mapping"),
    ("ledger_and_job_queue", "ledger + queue"),
    ("ledger_and_queue", "ledger + queue"),
    ("push_and_queue_api", "API + checkpoints"),
    ("ledger_checkpoint", "API + checkpoints"),
)

OTHER = "other"

#: what a reader of the per-concern table must know, by concern
NOTES: dict[str, str] = {
    "legacy tables append-only": "the naive change leaves the legacy tables writable",
    "LabSession columns": "columns, backfill, constraints, NOT NULL, one-active index; the "
                          "chain's V0006 also creates VerificationAttempt (empty)",
    "API + checkpoints": "the naive migration has no API",
}


def concern_of(name: str) -> str:
    """The concern of a chain file id or naive file name; :data:`OTHER` if none."""
    for part, concern in CONCERNS:
        if part in name:
            return concern
    return OTHER


def per_concern(chain_times: dict[str, float], naive_times: dict[str, float]) -> list[dict]:
    """One row per concern (in the order of :data:`CONCERNS`, "other" last when
    used): the files of each side, their summed seconds and chain_s / naive_s
    (None when the naive side has no file or took no measurable time)."""
    order = list(dict.fromkeys(c for _, c in CONCERNS))
    rows: dict[str, dict] = {}
    for side, times in (("chain", chain_times), ("naive", naive_times)):
        for name, secs in times.items():
            concern = concern_of(name)
            if concern not in order:
                order.append(concern)
            row = rows.setdefault(concern, {"concern": concern, "chain_files": [],
                                            "chain_s": 0.0, "naive_files": [],
                                            "naive_s": 0.0})
            row[f"{side}_files"].append(name)
            row[f"{side}_s"] += secs
    out = []
    for concern in order:
        if concern not in rows:
            continue
        row = rows[concern]
        row["chain_s"] = round(row["chain_s"], 3)
        row["naive_s"] = round(row["naive_s"], 3)
        row["ratio"] = row["chain_s"] / row["naive_s"] if row["naive_s"] > 0 else None
        if concern in NOTES:
            row["note"] = NOTES[concern]
        out.append(row)
    return out


def render_concerns(rows: list[dict]) -> list[str]:
    """The per-concern table of the text output (markdown, like the figures)."""
    out = ["| concern | chain files | chain s | naive files | naive s | chain / naive |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        out.append(f"| {r['concern']} | {', '.join(r['chain_files']) or '-'} | "
                   f"{r['chain_s']:.3f} | {', '.join(r['naive_files']) or '-'} | "
                   f"{r['naive_s']:.3f} | {ratio} |")
    notes = [f"{r['concern']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        out += ["", "notes: " + "; ".join(notes)]
    return out
