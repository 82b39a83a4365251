"""The state of the chain: the files on disk against what the bookkeeping records,
and the refusals that follow from it.

Checksums / drift
    ``_harness_migration`` records the sha256 of each file (and of its rollback)
    at apply time. ``status`` reports applied files whose content changed
    (``drift``) and rollback files changed since (``rollback_changed``);
    ``apply`` refuses to run while any applied file drifted, ``rollback`` too
    and also while the rollback file of any file it would roll back changed
    (the probe and the run would execute an edited file). Versions recorded but
    missing from the tree (``unknown``) and pending files older than the newest
    applied one (``out_of_order``) make apply refuse as well.
"""

from __future__ import annotations

from pathlib import Path

from .bookkeeping import HARNESS_TABLE, bk, bookkeeping_schema, read_state
from .chain import MigrationFile, find, load_chain
from .dsn import connect, redact
from .errors import DriftError, RefusedError


def compute_status(files: list[MigrationFile], state: dict[str, dict], root: Path | None):
    """Applied, pending (with incomplete files), drift, rollback_changed, unknown
    and out-of-order files: the chain on disk against the recorded ``state``."""
    by_id = {f.id: f for f in files}
    applied, pending, drift, unknown, rb_changed = [], [], [], [], []
    incomplete = []
    for f in files:
        rec = state.get(f.id)
        done = rec is not None and rec["state"] == "applied"
        if not done:
            op = None
            if rec is not None:
                # a no-transaction file interrupted half-way: neither applied nor
                # clean; apply redoes it (after finishing an interrupted rollback),
                # rollback undoes it
                op = "apply" if rec["state"] == "applying" else "rollback"
                incomplete.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                                   "operation": op, "since": rec["applied_at"]})
            pending.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                            "checksum": f.checksum, "no_transaction": f.no_transaction,
                            "baseline": f.baseline, "incomplete": op})
        else:
            applied.append({"id": f.id, "version": f.version, "file": f.relpath(root),
                            "checksum": rec["checksum"], "applied_at": rec["applied_at"],
                            "adopted": rec["adopted"]})
        if rec is None:
            continue
        if rec["checksum"] and rec["checksum"] != f.checksum:
            drift.append({"id": f.id, "file": f.relpath(root), "recorded_checksum":
                          rec["checksum"], "checksum": f.checksum})
        if rec["rollback_checksum"] and rec["rollback_checksum"] != f.rollback_checksum:
            rb_changed.append({"id": f.id, "file": f.rollback_relpath(root),
                               "recorded_checksum": rec["rollback_checksum"],
                               "checksum": f.rollback_checksum})
    for mid, rec in state.items():
        if mid not in by_id:
            unknown.append({"id": mid, "applied_at": rec["applied_at"],
                            "checksum": rec["checksum"]})
    # out of order: a pending file older than an applied one
    out_of_order = []
    if applied:
        newest = max(a["version"] for a in applied)
        out_of_order = [p["id"] for p in pending if p["version"] < newest]
    return {"applied": applied, "pending": pending, "drift": drift, "unknown": unknown,
            "rollback_changed": rb_changed, "out_of_order": out_of_order,
            "incomplete": incomplete,
            "current": applied[-1]["id"] if applied else None}


def status(target_dsn: str, sql_root: Path | None = None) -> dict:
    """CONTRACT 8: ``applied`` / ``pending`` / ``drift`` lists (oldest first).

    Read-only: works (everything pending) on a database without bookkeeping.
    """
    files = load_chain(sql_root)
    root = Path(sql_root).parent if sql_root else None
    with connect(target_dsn) as conn:
        state = read_state(conn)
        schema = bookkeeping_schema(conn)
        server_version = conn.info.server_version
    out = compute_status(files, state, root)
    out["target"] = redact(target_dsn)
    out["server_version"] = server_version
    # where the bookkeeping was read: the bookkeeping schema; "public" for a database
    # an earlier harness migrated (the next apply or rollback moves it); None: none yet
    out["bookkeeping_schema"] = schema
    return out

#: The ids of the pre-release chain (45 files after the baseline, re-cut into the
#: release chain before the first production apply; its history is in git). A
#: database that recorded any of them was built by that chain and cannot be
#: upgraded in place: it is refused as drift, with how to rebuild it.
PRERELEASE_IDS = frozenset({
    "V0002__roles", "V0004__rollback_archive", "V0005__lab_status_failed",
    "V0006__lab_version", "V0007__lab_version_guards",
    "V0008__lab_session_version_columns", "V0009__verification_attempt",
    "V0010__verification_attempt_guards", "V0011__lab_session_lifecycle_v2",
    "V0012__lab_session_backfill", "V0013__verification_attempt_copy",
    "V0014__lab_session_constraints", "V0015__lab_session_constraints_validate",
    "V0016__lab_session_version_not_null", "V0017__lab_session_one_active",
    "V0020__canonical_repo_url", "V0021__github_repo_mapping",
    "V0022__github_repo_mapping_guards",
    "V0023__github_repo_mapping_backfill_procedure",
    "V0024__github_repo_mapping_backfill", "V0025__lab_attempt",
    "V0026__lab_attempt_guards", "V0027__lab_attempt_chain_verify",
    "V0028__session_binding_api", "V0029__enqueue_verification_job_placeholder",
    "V0030__record_push", "V0039__lab_attempt_job_key", "V0040__verification_job",
    "V0041__verification_job_guards", "V0042__verification_job_api",
    "V0043__auditlog_webhook_guard", "V0050__lab_session_app_update_columns",
    "V0051__lab_session_identity_guard", "V0052__verification_job_lease_token",
    "V0053__repo_binding_conflicts", "V0054__session_serialisation_row_locks",
    "V0055__locale_independent_text_rules", "V0056__api_value_bounds",
    "V0057__restorable_timestamps", "V0058__restorable_timestamps_validate",
    "V0060__record_push_set_based", "V0061__verification_job_lease_token_lookup",
    "V0070__ledger_checkpoint", "V0071__ledger_checkpoint_guards",
})

PRERELEASE_HELP = [
    "this database was built by the pre-release chain (numbered before the release "
    "re-cut); no production database ever ran it, and it cannot be upgraded in place",
    "rebuild it: drop and recreate the development database (or restore a dump taken "
    "before its first 'harness apply'), then run 'harness apply'",
]


def refuse_prerelease(st: dict) -> None:
    """Refuse (exit 3) a database that recorded ids of the pre-release chain."""
    found = sorted(u["id"] for u in st["unknown"] if u["id"] in PRERELEASE_IDS)
    if found:
        raise DriftError(
            "refusing to proceed: the database was built by a pre-release chain "
            f"({len(found)} recorded migration(s) of it, e.g. {found[0]})",
            details=PRERELEASE_HELP)


def refuse_if_unsafe(st: dict) -> None:
    """Apply's refusals (exit 3): a pre-release database, drift, unknown versions,
    out-of-order files."""
    refuse_prerelease(st)
    if st["drift"]:
        raise DriftError(
            "refusing to proceed: applied migration files were edited since they were "
            "applied (drift)",
            details=[f"{d['file']}: recorded sha256 {d['recorded_checksum'][:12]}..., "
                     f"file now {d['checksum'][:12]}..." for d in st["drift"]]
            + ["restore the applied files; put changes in a new migration"])
    if st["unknown"]:
        raise RefusedError(
            "refusing to proceed: the database has migrations this tree does not know "
            "(is the checkout older than the database?)",
            details=[u["id"] for u in st["unknown"]])
    if st["out_of_order"]:
        raise RefusedError(
            "refusing to proceed: pending migrations are older than the newest applied "
            "one (they would run out of order)",
            details=st["out_of_order"])


def refuse_rollback_drift(st: dict, victims: list[str]) -> None:
    """Rollback's drift rule: apply's (no applied file edited since it was
    applied), plus the rollback file of every file it would roll back (the probe
    and the run would execute an edited file)."""
    refuse_prerelease(st)
    rb = [c for c in st["rollback_changed"] if c["id"] in victims]
    if not (st["drift"] or rb):
        return
    raise DriftError(
        "refusing to roll back: files were edited since they were applied (drift); "
        "nothing was rolled back",
        details=[f"{d['file']} (migration file): recorded sha256 "
                 f"{d['recorded_checksum'][:12]}..., file now {d['checksum'][:12]}..."
                 for d in st["drift"]]
        + [f"{c['file']} (rollback file of {c['id']}, which this rollback would run): "
           f"recorded sha256 {c['recorded_checksum'][:12]}..., file now "
           + (f"{c['checksum'][:12]}..." if c["checksum"] else "missing")
           for c in rb]
        + ["restore the files as they were applied (the recorded sha256 is in "
           f"{bk(HARNESS_TABLE)}); changes go into a new versioned file"])


def select_pending(files, st, to):
    """(the target file or None, the files apply would run through it)."""
    applied_ids = {a["id"] for a in st["applied"]}
    target = find(files, to) if to else None
    pending = [f for f in files if f.id not in applied_ids
               and (target is None or f.version <= target.version)]
    return target, pending
