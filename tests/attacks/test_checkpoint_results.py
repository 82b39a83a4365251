"""Checkpoints cover results, not only the ledger.

The attacker holds a superuser's credentials (no worker keys) and, after a
checkpoint was taken and kept off the database, disables every trigger and
rewrites a FAIL into a PASS: an attempt's result, a job's status, a session's
VERIFIED_PASS (or an attempt's logs, or deletes one). ``harness verify
--checkpoint`` must fail naming the row. Untouched results, and attempts, jobs
and sessions that finish after the checkpoint, pass. A v1 (ledger-only)
document still verifies its ledger part.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import ledger, ledger_results
from tests.attacks.test_hash_layout import unguarded_update
from tests.builders import claim, commit, complete, push, seed_world, sha
from tests.attacks.test_hash_layout import FUZZ
from tests.test_verify_fuzz import json_values, run_cli


@pytest.fixture
def world(db, tmp_path):
    """The seeded world, session 2 closed as FAILED by the app (its job FAILED), and a
    checkpoint of it written to a file."""
    w = seed_world(db)
    app = db.connect("app")
    app.execute("UPDATE \"LabSession\" SET status = 'FAILED' WHERE id = %s", (w["s2"],))
    owner = db.connect("owner")
    w["doc"] = ledger.take_checkpoint(owner)
    w["path"] = tmp_path / "checkpoint.json"
    w["path"].write_text(json.dumps(w["doc"]))
    w["su"], w["owner"], w["db"] = db.connect("superuser"), owner, db
    w["failed_attempt"] = owner.execute(
        'SELECT id FROM "VerificationAttempt" WHERE "verificationJobId" = %s',
        (w["jobs"][1],)).fetchone()[0]
    return w


def verify_checkpoint(w, path=None) -> tuple[int, str]:
    return run_cli("verify", "--target", w["db"].dsn(), "--no-reference",
                   "--checkpoint", str(path or w["path"]))


def test_a_checkpoint_commits_to_every_attempt_finished_job_and_session(world):
    res = world["doc"]["results"]
    assert world["doc"]["format"] == ledger_results.CHECKPOINT_FORMAT_V2
    assert {a["result"] for a in res["attempts"]} == {"PASS", "FAIL"}
    assert {j["id"] for j in res["jobs"]} == {str(j) for j in world["jobs"]}
    assert {(s["id"], s["status"]) for s in res["sessions"]} == {
        (str(world["s1"]), "VERIFIED_PASS"), (str(world["s2"]), "FAILED")}
    code, out = verify_checkpoint(world)
    assert code == 0, out
    assert "2 attempts, 2 finished jobs, 2 finished sessions unchanged" in out, out
    # the in-database record names the combined root and the results' own root
    ledger.record(world["owner"], world["doc"])
    assert world["owner"].execute(
        'SELECT "root", "resultsRoot" FROM "LedgerCheckpoint"').fetchall() == [
        (world["doc"]["root"], res["root"])]
    assert ledger_results.combined_root(ledger.root_of(world["doc"]["sessions"]),
                                        res["root"]) == world["doc"]["root"]


REWRITES = {
    "attempt_result": ("VerificationAttempt",
                       "UPDATE \"VerificationAttempt\" SET result = 'PASS' WHERE id = %s",
                       lambda w: w["failed_attempt"], "result 'FAIL' -> 'PASS'"),
    "attempt_logs": ("VerificationAttempt",
                     "UPDATE \"VerificationAttempt\" SET logs = '{\"ok\": true}' WHERE id = %s",
                     lambda w: w["failed_attempt"], "logsDigest"),
    "attempt_deleted": ("VerificationAttempt",
                        'DELETE FROM "VerificationAttempt" WHERE id = %s',
                        lambda w: w["failed_attempt"], "gone since the checkpoint"),
    "job_status": ("VerificationJob",
                   "UPDATE \"VerificationJob\" SET status = 'PASSED' WHERE id = %s",
                   lambda w: w["jobs"][1], "status 'FAILED' -> 'PASSED'"),
    "job_run_count": ("VerificationJob",
                      'UPDATE "VerificationJob" SET "runCount" = 2 WHERE id = %s',
                      lambda w: w["jobs"][1], "runCount 1 -> 2"),
    "session_status": ("LabSession",
                       "UPDATE \"LabSession\" SET status = 'VERIFIED_PASS' WHERE id = %s",
                       lambda w: w["s2"], "status 'FAILED' -> 'VERIFIED_PASS'"),
}


@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_a_result_rewritten_after_the_checkpoint_fails_verify_naming_the_row(world,
                                                                             rewrite):
    table, statement, row, change = REWRITES[rewrite]
    row_id = row(world)
    unguarded_update(world["su"], statement, (row_id,), table)
    code, out = verify_checkpoint(world)
    assert code == 1, out
    assert out.splitlines()[-1].startswith("verify: FAILED"), out
    line = next((ln for ln in out.splitlines() if str(row_id) in ln and change in ln), None)
    assert line is not None, out
    # the ledger itself is intact: only the results part of the checkpoint saw it
    assert ledger.recompute(world["owner"]).breaks == []
    # and no later checkpoint can be taken that claims to extend this one
    with pytest.raises(ledger.CheckpointError, match="does not extend"):
        ledger.take_checkpoint(world["owner"], previous=world["doc"])


def test_results_that_finish_after_the_checkpoint_are_allowed(world):
    db = world["db"]
    app, worker = db.connect("app"), db.connect("worker")
    push(app, [commit(sha(8))], n=1, delivery="d-late")
    job = claim(worker, "w9")
    complete(worker, job["id"], "FAILED", worker_id="w9")
    code, out = verify_checkpoint(world)
    assert code == 0, out
    later = ledger.take_checkpoint(world["owner"], previous=world["doc"])
    assert len(later["results"]["attempts"]) == 3
    assert ledger.compare(world["doc"], later) == []


def test_a_rewrite_between_two_checkpoints_is_caught_offline(world):
    """``checkpoint --compare``: a later document whose results differ from the
    earlier one's (taken without --previous after a rewrite) does not extend it."""
    unguarded_update(world["su"], "UPDATE \"VerificationJob\" SET status = 'PASSED' "
                     "WHERE id = %s", (world["jobs"][1],), "VerificationJob")
    later = ledger.take_checkpoint(world["owner"])
    problems = ledger.compare(world["doc"], later)
    assert any(str(world["jobs"][1]) in p and "'FAILED' -> 'PASSED'" in p
               for p in problems), problems


def test_an_edited_results_section_is_refused_with_exit_2(world, tmp_path):
    doc = json.loads(world["path"].read_text())
    for entry in doc["results"]["attempts"]:
        entry["result"] = "PASS"
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    code, out = verify_checkpoint(world, path)
    assert code == 2, out
    assert "results.root: its root does not match its results" in out, out
    doc["results"]["root"] = ledger_results.results_root(doc["results"])
    path.write_text(json.dumps(doc))
    code, out = verify_checkpoint(world, path)
    assert code == 2, out
    assert "field root: its root does not match" in out, out


def test_a_v1_document_still_verifies_its_ledger_part(world, tmp_path):
    doc = {k: v for k, v in world["doc"].items() if k != "results"}
    doc["format"], doc["root"] = ledger.CHECKPOINT_FORMAT, ledger.root_of(doc["sessions"])
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(doc))
    code, out = verify_checkpoint(world, path)
    assert code == 0, out
    assert "results not covered (a v1 document)" in out, out
    unguarded_update(world["su"], 'UPDATE "LabAttempt" SET "authorName" = \'X\' '
                     'WHERE "sessionId" = %s AND "chainSeq" = 1', (world["s1"],))
    code, out = verify_checkpoint(world, path)
    assert code == 1, out


# ------------------------------------------------------------ hostile documents

V2_DOC = {
    "format": ledger_results.CHECKPOINT_FORMAT_V2, "takenAt": "2026-12-01T00:00:00+00:00",
    "rows": 1, "sessionCount": 1, "previousRoot": None,
    "sessions": [{"sessionId": "00000000-0000-4000-8000-000000000001", "chainSeq": 1,
                  "rowHash": "a" * 64}],
    "results": {
        "attempts": [{"id": "00000000-0000-4000-8000-0000000000a1",
                      "sessionId": "00000000-0000-4000-8000-000000000001",
                      "commitSha": "b" * 40, "result": "FAIL",
                      "verificationJobId": "00000000-0000-4000-8000-0000000000b1",
                      "logsDigest": "c" * 64}],
        "jobs": [{"id": "00000000-0000-4000-8000-0000000000b1", "status": "FAILED",
                  "labAttemptId": "00000000-0000-4000-8000-0000000000c1", "runCount": 1,
                  "completedAt": "2026-12-01 00:00:00.5"}],
        "sessions": [{"id": "00000000-0000-4000-8000-000000000001", "status": "FAILED",
                      "completedAt": "2026-12-01 00:00:01"}]}}
V2_DOC["results"]["root"] = ledger_results.results_root(V2_DOC["results"])
V2_DOC["root"] = ledger_results.combined_root(ledger.root_of(V2_DOC["sessions"]),
                                              V2_DOC["results"]["root"])


def test_the_reference_v2_document_is_valid():
    assert ledger.validate(json.loads(json.dumps(V2_DOC))) == V2_DOC


@FUZZ
@given(kind=st.sampled_from(sorted(ledger_results.KINDS)),
       field=st.sampled_from(["id", "sessionId", "commitSha", "result", "status",
                              "verificationJobId", "logsDigest", "labAttemptId", "runCount",
                              "completedAt", "extra"]),
       value=json_values, recompute_roots=st.booleans())
def test_any_edit_of_the_results_section_is_refused_by_name_or_changes_nothing(
        kind, field, value, recompute_roots):
    doc = json.loads(json.dumps(V2_DOC))
    doc["results"][kind][0][field] = value
    if recompute_roots:     # an editor who also recomputes every root
        try:
            doc["results"]["root"] = ledger_results.results_root(doc["results"])
            doc["root"] = ledger_results.combined_root(ledger.root_of(doc["sessions"]),
                                                       doc["results"]["root"])
        except (KeyError, TypeError, ValueError):
            pass
    try:
        ledger.validate(doc)
    except ledger.CheckpointFileError as e:
        assert "results" in str(e) or "field root" in str(e), e
        return
    # accepted: only a key the root does not cover, the same value, or an edit with
    # every root recomputed to a value the field can hold
    assert field not in ledger_results.KINDS[kind][0] or recompute_roots \
        or doc == V2_DOC, doc
