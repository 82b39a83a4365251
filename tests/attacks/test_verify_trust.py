"""verify trusts nothing the owner can write: a forged pass cannot be excused as
"legacy" by editing the harness's bookkeeping, and the bookkeeping's own
anomalies are findings.

The forgery: a session without a PASS attempt is put in VERIFIED_PASS by a
superuser who lifts the lifecycle guard for one UPDATE (and puts it back); then
the bookkeeping row of the lifecycle file is edited (as the owner or a
superuser) so that the pass looks older than the guard. What excuses a legacy
pass is only the ``legacy`` section of a checkpoint kept off the database.
"""

from __future__ import annotations

import pytest

from harness import ledger
from harness import verify as V
from harness.bookkeeping import BOOKKEEPING_SCHEMA, HARNESS_TABLE
from tests.builders import seed_world
from tests.chain_ids import CHAIN
from tests.helpers import legacy_checkpoint, raises_sqlstate

BK = f'{BOOKKEEPING_SCHEMA}."{HARNESS_TABLE}"'


def forge_pass(db, sid) -> None:
    """VERIFIED_PASS without a PASS attempt, completedAt in 2020: the guard lifted
    for one UPDATE by a superuser and put back as it was (ENABLE ALWAYS)."""
    su = db.connect("superuser")
    with su.transaction():
        su.execute('ALTER TABLE "LabSession" DISABLE TRIGGER labsession_lifecycle_guard')
        su.execute('ALTER TABLE "LabSession" DISABLE TRIGGER labsession_identity_guard')
        su.execute("""UPDATE "LabSession" SET "status" = 'VERIFIED_PASS',
                      "completedAt" = '2020-01-01' WHERE "id" = %s""", (sid,))
        su.execute('ALTER TABLE "LabSession" ENABLE ALWAYS TRIGGER labsession_lifecycle_guard')
        su.execute('ALTER TABLE "LabSession" ENABLE ALWAYS TRIGGER labsession_identity_guard')


def fails_naming(rep: V.Report, check: str, *parts: str) -> None:
    c = rep.by_name(check)
    assert c.status == "fail", V.render_table(rep)
    text = " ".join(f["object"] + " " + f["message"] + " " + " ".join(f.get("rows", []))
                    for f in c.findings if f["severity"] == "fail")
    for p in parts:
        assert p in text, V.render_table(rep)


@pytest.mark.parametrize("role", ["owner", "superuser"])
def test_a_bookkeeping_row_edited_to_excuse_a_forged_pass_fails_verify(db, role):
    world = seed_world(db)
    sid = world["s2"]                     # no PASS attempt
    forge_pass(db, sid)
    # the edit that used to make the forged pass "legacy": the lifecycle file applied now
    db.connect(role).execute(f"UPDATE {BK} SET applied_at = now() WHERE migration_id = %s",
                             (CHAIN["lifecycle"],))
    rep = V.verify(db.dsn("owner"), reference_snapshot=None)
    assert rep.exit_code == 1
    fails_naming(rep, "verified_pass_has_pass_attempt", str(sid), "unproven")
    # and the edit itself is a finding: the lifecycle file now looks recorded after
    # files that depend on it
    fails_naming(rep, "bookkeeping", CHAIN["lifecycle"], "before a file it depends on")


def test_a_checkpoint_taken_before_the_forgery_does_not_excuse_it(db):
    world = seed_world(db)
    before = legacy_checkpoint(db.dsn("owner"))
    assert before["legacy"]["sessions"] == []
    forge_pass(db, world["s2"])
    rep = V.verify(db.dsn("owner"), reference_snapshot=None, checkpoint=before)
    assert rep.exit_code == 1
    fails_naming(rep, "verified_pass_has_pass_attempt", str(world["s2"]),
                 "not listed in the checkpoint's legacy section")
    # a later checkpoint that extends the earlier one refuses to take the forgery in
    owner = db.connect("owner")
    with pytest.raises(ledger.CheckpointError, match="without a PASS attempt"):
        ledger.take_checkpoint(owner, before)


def test_a_legacy_section_edited_to_list_a_forged_pass_is_refused(db, tmp_path):
    """The file is the evidence: its digest must match its ids."""
    import json
    world = seed_world(db)
    doc = legacy_checkpoint(db.dsn("owner"))
    doc["legacy"]["sessions"].append(str(world["s2"]))
    doc["legacy"]["count"] += 1
    path = tmp_path / "cp.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ledger.CheckpointFileError, match="legacy.digest"):
        ledger.load(path)


@pytest.mark.parametrize("role", ["owner", "superuser"])
@pytest.mark.parametrize("edit, expected", [
    ("SET applied_at = now() + interval '1 day' WHERE migration_id = %(last)s",
     "applied_at in the future"),
    ("SET adopted = true WHERE migration_id = %(lifecycle)s",
     "adopted (recorded without running) but not the baseline"),
    ("SET checksum = repeat('0', 64) WHERE migration_id = %(lifecycle)s",
     "edited since they were applied"),
    ("SET checksum = '' WHERE migration_id = %(lifecycle)s",
     "recorded without the checksum of its file"),
])
def test_bookkeeping_anomalies_are_findings(db, role, edit, expected):
    files = sorted(CHAIN.values())
    db.connect(role).execute(f"UPDATE {BK} {edit}",
                             {"last": files[-1], "lifecycle": CHAIN["lifecycle"]})
    rep = V.verify(db.dsn("owner"), reference_snapshot=None)
    assert rep.exit_code == 1
    text = V.render_table(rep)
    assert expected in text, text


def test_the_bookkeeping_stays_closed_to_the_app(db):
    with raises_sqlstate("42501"):
        db.connect("app").execute(f"UPDATE {BK} SET applied_at = now()")


def test_a_forged_pass_attempt_without_a_job_is_not_taken_for_a_legacy_copy(db):
    """A superuser lifts the attempt guard for one INSERT: a PASS attempt without a job
    (what only V0009's copies of VerificationLog are), then the lifecycle accepts the
    pass. A checkpoint taken before does not list it: verify fails, with or without it."""
    world = seed_world(db)
    sid = world["s2"]
    before = legacy_checkpoint(db.dsn("owner"))
    su = db.connect("superuser")
    with su.transaction():
        su.execute('ALTER TABLE "VerificationAttempt" DISABLE TRIGGER '
                   "verificationattempt_insert_guard")
        su.execute('INSERT INTO "VerificationAttempt" ("id", "sessionId", "commitSha", '
                   "\"result\", \"logs\") VALUES (gen_random_uuid(), %s, %s, 'PASS', '{}')",
                   (sid, "a" * 40))
        su.execute('ALTER TABLE "VerificationAttempt" ENABLE ALWAYS TRIGGER '
                   "verificationattempt_insert_guard")
    db.connect("app").execute(
        """UPDATE "LabSession" SET "status" = 'VERIFIED_PASS' WHERE "id" = %s""", (sid,))
    for cp in (None, before):
        rep = V.verify(db.dsn("owner"), reference_snapshot=None, checkpoint=cp)
        assert rep.exit_code == 1
        fails_naming(rep, "verified_pass_has_pass_attempt", str(sid),
                     "its only PASS attempts have no job")
    with pytest.raises(ledger.CheckpointError, match="attempts without a job appeared"):
        ledger.take_checkpoint(db.connect("owner"), before)
