"""The release chain: short enough to review in one sitting, each object created once,
the same database as the pre-release chain it replaced, and no way to mistake a
database that chain built for one this chain can upgrade."""

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import apply as A
from harness import catalog, chain, chain_doc, lint
from harness.chain_state import PRERELEASE_IDS

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def _json(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def test_release_chain_has_at_most_twenty_files_after_the_baseline(sql_root):
    files = chain.load_chain(sql_root)
    assert files[0].baseline
    assert 0 < len(files) - 1 <= 20, [f.id for f in files]
    assert not {f.id for f in files[1:]} & PRERELEASE_IDS


def test_each_function_procedure_and_trigger_is_created_by_one_file():
    assert lint.created_once(REPO) == []


def test_a_function_created_again_in_a_later_file_is_a_lint_finding(sql_root, tmp_path):
    import shutil
    root = tmp_path / "repo"
    shutil.copytree(sql_root, root / "sql")
    last = chain.load_chain(root / "sql")[-1]
    body = ("-- V0099__again: x\n--\n-- What: x\n-- Why: x\n-- Transaction: yes.\n"
            "-- Locks: none.\n-- Pre-conditions: none.\n-- Rollback: none.\n\n"
            "CREATE OR REPLACE FUNCTION record_push() RETURNS void LANGUAGE sql AS $$ $$;\n")
    (root / "sql" / "migrations" / "V0099__again.sql").write_text(body)
    (root / "sql" / "rollback" / "V0099__again.sql").write_text(
        "-- Rollback of V0099__again\n--\n-- What: nothing. Locks: none.\n\nSELECT 1;\n")
    found = lint.created_once(root)
    assert [(f.rule, f.file) for f in found] == [("created-once", "sql/migrations/V0099__again.sql")]
    assert "function record_push" in found[0].message and last.id != "V0099__again"


#: What changed on purpose since the re-cut (the security round that followed it),
#: each with why. Any other difference from the pre-release catalog fails the test,
#: and so does an entry that no longer matches a difference (the list cannot go stale).
#: no operator or cast the owner plants for the pack's enum types changes what a guard
#: or an API function compares, and no schema but pg_catalog is searched
HARDENED = "pg_catalog operators for the pack's enums, pinned search_path (V0005-V0019)"

INTENDED = {
    'constraint "LabAttempt_createdAt_check"': "the hash layout's domain: one spelling "
                                               "per timestamp (V0017)",
    'constraint "LabAttempt_pushedAt_check"': "likewise (V0017)",
    "function lab_attempt_changed_files_valid(": "strict jsonpath: nested arrays no longer "
                                                 "pass as paths (V0017)",
    'column "LedgerCheckpoint"."resultsRoot"': "checkpoints commit to results (V0020)",
    'constraint "LedgerCheckpoint_resultsRoot_check"': "likewise (V0020)",
    'column "VerificationJob"."attestationKeyId"': "worker attestations (V0017)",
    'column "VerificationJob"."attestationSignature"': "likewise (V0017)",
    'constraint "VerificationJob_attestation_check"': "likewise (V0017)",
    "function complete_verification_job(": "takes and stores the attestation; enum "
                                           "comparisons by pg_catalog operators; lock_timeout "
                                           "5s, no settable marker (V0019)",
    "function claim_verification_job(": HARDENED + "; SET lock_timeout = '5s': 55P03, not a "
                                        "stall (V0019)",
    "function requeue_expired_verification_jobs(": HARDENED + "; lock_timeout (V0019)",
    "function record_push(": HARDENED + "; lock_timeout (V0019)",
    "function create_lab_session(": "SET lock_timeout = '5s' (V0019)",
    "function enqueue_verification_job(": HARDENED + "; lock_timeout (V0019)",
    "function transition_api_caller(": "job and attempt moves authorised by the call "
                                       "stack, not by a setting; another session's "
                                       "temporary functions not counted, so no connected "
                                       "role can stop every worker; the frame read without "
                                       "a capturing regex (V0007)",
    "function verification_job_transition_guard(": HARDENED + "; the call stack (V0018)",
    "function verification_attempt_insert_guard(": HARDENED + "; the call stack (V0007)",
    "function enforce_lab_session_status_transition(": HARDENED,
    "function guard_github_repo_mapping(": HARDENED,
    "function guard_lab_session_identity(": HARDENED,
    "function lab_attempt_session_lock(": HARDENED,
    "function lab_session_version_default(": HARDENED,
    "function lab_version_snapshot(": HARDENED,
    "function list_unmapped_lab_sessions(": HARDENED,
    "function resolve_lab_session(": HARDENED,
    "function sync_github_repo_mapping_active(": HARDENED,
    "function canonical_repo_url(": "printable ASCII by a code-point range and letters "
                                    "folded by lower(), both under COLLATE \"C\": the same "
                                    "answers at a third of translate()'s cost (V0014)",
    "privilege on column Lab.": "forgea_app UPDATEs the lab's content columns only: no "
                                "LOCK TABLE above ROW EXCLUSIVE (V0002)",
    "privilege on table Lab:": "likewise: no table-level UPDATE (V0002)",
}


def _unintended(lines: list[str], used: set) -> list[str]:
    out = []
    for line in lines:
        head = line.splitlines()[0]
        hits = [k for k in INTENDED if k in head]
        used.update(hits)
        if not hits:
            out.append(line)
    return out


def test_release_chain_builds_what_the_prerelease_chain_built(
        db, reference_snapshot, pg_version):
    """Tables, columns, constraints, indexes, triggers, enums, views, functions (their
    bodies included) and every grant of public, and the archive schema: what the
    45-file pre-release chain built on this major (its snapshot was taken from that
    chain before it was re-cut), but for the changes listed in INTENDED."""
    before = json.loads((DATA / f"prerelease_chain_catalog_pg{pg_version}.json").read_text())
    live = _json(reference_snapshot)
    used: set = set()
    assert _unintended(catalog.diff(before["public"]["catalog"], live["catalog"]), used) == []
    assert _unintended(catalog.privileges_diff(before["public"]["privileges"],
                                               live["privileges"]), used) == []
    assert set(INTENDED) - used == set(), "INTENDED lists changes the chain no longer makes"
    with db.connect("owner") as conn:
        archive = _json(catalog.snapshot(conn, "forgea_archive"))
    assert catalog.diff(before["forgea_archive"], archive) == []


def _record_prerelease_history(db, ids):
    """What the pre-release chain left in the bookkeeping of a development database."""
    with db.connect("owner") as conn:
        for mid in ids:
            conn.execute(f"INSERT INTO {A.bk(A.MIGRATION_TABLE)} (migration_hash, "
                         "migration_id, applied_at_utc) VALUES (md5(%s), %s, now())",
                         (mid, mid))


def _cli(*args, sql_root):
    env = dict(os.environ, HARNESS_SQL_ROOT=str(sql_root))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_database_built_by_the_prerelease_chain_is_refused_with_how_to_rebuild(
        baseline_db, sql_root):
    """A development database that recorded the pre-release ids: apply, plan and
    rollback exit 3, say it was built by a pre-release chain and how to rebuild, and
    change nothing."""
    _record_prerelease_history(baseline_db, ["V0002__roles", "V0004__rollback_archive",
                                             "V0005__lab_status_failed"])
    with baseline_db.connect("owner") as conn:
        before = catalog.snapshot(conn)
    for args in (["apply"], ["apply", "--dry-run"], ["plan"], ["rollback", "--steps", "1"]):
        p = _cli(*args, "--target", baseline_db.dsn(), sql_root=sql_root)
        assert p.returncode == 3, (args, p.stderr)
        assert "built by a pre-release chain" in p.stderr, p.stderr
        assert "rebuild it" in p.stderr and "Traceback" not in p.stderr
    with baseline_db.connect("owner") as conn:
        assert catalog.diff(before, catalog.snapshot(conn)) == []
    st = A.status(baseline_db.dsn(), sql_root)
    assert {u["id"] for u in st["unknown"]} == {"V0002__roles", "V0004__rollback_archive",
                                                "V0005__lab_status_failed"}


def test_dba_chain_table_is_generated_from_the_file_headers(sql_root):
    doc = (REPO / "docs" / "dba.md").read_text()
    assert chain_doc.current_block(doc) == chain_doc.render(sql_root), (
        "docs/dba.md's chain table is stale: run python -m harness.chain_doc --write")
    for f in chain.load_chain(sql_root)[1:]:
        assert f"`{f.id}`" in chain_doc.current_block(doc)


def test_every_header_has_the_fields_the_table_is_made_of(sql_root):
    for f in chain.load_chain(sql_root)[1:]:
        assert chain_doc.missing_fields(f.sql, rollback=False) == [], f.id
        assert chain_doc.missing_fields(f.rollback_sql, rollback=True) == [], f.id
    assert chain_doc.missing_fields("-- V0099__x: y\n--\n-- What: z\n\nSELECT 1;\n",
                                    rollback=False) == [
        "Why", "Transaction", "Locks", "Pre-conditions", "Rollback"]
