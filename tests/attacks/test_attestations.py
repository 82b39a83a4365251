"""Forged passes against worker attestations: no one inside the database can make one.

With worker keys registered (``harness verify --worker-keys``), a pass (a
PASSED job, a PASS attempt, a VERIFIED_PASS session) must carry an Ed25519
signature by a registered key over the statement recomputed from the rows
(harness.attest). The attackers are the migration owner, who can act as a
worker, and a superuser, who can switch the guards off and write any row.
Each attack here does write its forged pass (the database cannot stop its
owner); a passed test is a forged pass that ``verify --worker-keys`` rejects,
naming it, while the genuine signed pass of the same world is accepted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from harness import attest
from harness import verify as V
from tests.builders import claim, complete, queue_world
from tests.helpers import raises_sqlstate

KID = "worker-1"
LOGS = {"summary": "all green", "tests": {"passed": 12, "failed": 0},
        "ratio": 0.1, "big": 1e16, "scale": 1.5, "note": "línea\n\"ok\"\t\u0001"}


@pytest.fixture
def w(db):
    """A queue world with one genuine, signed PASS (job ``passed``, session
    VERIFIED_PASS) and the registered public keys; a second session of another
    user and lab, active, for the attacks."""
    qw = queue_world(db)
    key, pub = attest.generate()
    job = qw.running_job("worker-a")
    attest.complete_attested(qw.worker, job, "worker-a", "PASSED", 0, LOGS, key, KID)
    from tests.builders import add_lab, add_user, create_session
    lab2, user2 = add_lab(qw.owner), add_user(qw.owner)
    qw.other = create_session(qw.app, user2, lab2)
    qw.key, qw.keys, qw.passed = key, {KID: attest.parse_worker_keys({KID: pub})[KID]}, job
    qw.su = db.connect("superuser")
    return qw


def _check(db, keys):
    return V.verify(db.dsn("owner"), worker_keys=keys).by_name("worker_attestations")


def _fails_naming(c, needle: str, msg_part: str):
    hits = [f for f in c.findings if f["severity"] == "fail" and msg_part in f["message"]
            and any(needle in r for r in f.get("rows", []))]
    assert c.status == "fail" and hits, (needle, msg_part, c.findings)


def _other_job(w) -> dict:
    """A job of the second session, enqueued (QUEUED)."""
    from tests.builders import add_attempt, enqueue
    return {"id": enqueue(w.app, add_attempt(w.owner, w.other))}


@contextlib.contextmanager
def _unguarded(su, *tables):
    """A superuser's transaction with every user trigger of ``tables`` off, put
    back afterwards in the modes they had."""
    with su.transaction():
        modes = su.execute(
            "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger "
            "WHERE tgrelid = ANY(%s::regclass[]) AND NOT tgisinternal",
            ([f'public."{t}"' for t in tables],)).fetchall()
        for t in tables:
            su.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(
                sql.Identifier(t)))
        yield
        for rel, name, mode in modes:
            how = {"A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "O": "ENABLE",
                   "D": "DISABLE"}[mode]
            su.execute(sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                sql.SQL(rel), sql.SQL(how), sql.Identifier(name)))


# ------------------------------------------------------------------ the genuine path


def test_genuine_signed_pass_is_accepted(db, w):
    rep = V.verify(db.dsn("owner"), worker_keys=w.keys)
    c = rep.by_name("worker_attestations")
    assert c.status == "info", c.findings
    assert rep.ok, V.render_table(rep)
    row = w.owner.execute('SELECT "attestationKeyId", octet_length("attestationSignature") '
                          'FROM "VerificationJob" WHERE id = %s', (w.passed["id"],)).fetchone()
    assert row == (KID, 64)


def test_without_keys_passes_are_reported_unattested(db, w):
    c = _check(db, None)
    assert c.status == "info"
    assert any("unattested" in f["message"] and "--worker-keys" in f["message"]
               for f in c.findings), c.findings


def test_unsigned_pass_fails_once_keys_are_registered(db, w):
    job = claim(w.worker, "worker-b")
    assert job is None  # the world's only job is done; make one on the other session
    job = _other_job(w)
    got = claim(w.worker, "worker-b")
    assert got["id"] == job["id"]
    complete(w.worker, job["id"], "PASSED", worker_id="worker-b")   # today's call, no signature
    c = _check(db, w.keys)
    _fails_naming(c, str(job["id"]), "no attestation")
    _fails_naming(c, str(w.other), "VERIFIED_PASS session without an attested pass")


# ------------------------------------------------------------------ the owner as a worker


@pytest.mark.parametrize("how", ["unregistered key", "registered key id, another key",
                                 "no signature"])
def test_owner_as_self_granted_worker_cannot_forge_an_attested_pass(db, w, how):
    owner = w.owner
    me = owner.execute("SELECT current_user").fetchone()[0]
    try:
        owner.execute(sql.SQL("GRANT forgea_worker TO {}").format(sql.Identifier(me)))
    except psycopg.errors.InsufficientPrivilege:
        w.su.execute(sql.SQL("GRANT forgea_worker TO {}").format(sql.Identifier(me)))
    job = _other_job(w)
    got = claim(owner, "owner-as-worker")
    assert got["id"] == job["id"]
    rogue, _ = attest.generate()
    if how == "no signature":
        complete(owner, got["id"], "PASSED", worker_id="owner-as-worker",
                 lease_token=got["leaseToken"])
        msg = "no attestation"
    else:
        kid = "rogue" if how == "unregistered key" else KID
        attest.complete_attested(owner, got, "owner-as-worker", "PASSED", 0,
                                 {"summary": "forged"}, rogue, kid)
        msg = "does not register" if kid == "rogue" else "signature does not match"
    assert owner.execute('SELECT status::text FROM "LabSession" WHERE id = %s',
                         (w.other,)).fetchone()[0] == "VERIFIED_PASS"   # written...
    c = _check(db, w.keys)                                              # ...and rejected
    _fails_naming(c, str(got["id"]), msg)
    _fails_naming(c, str(w.other), "without an attested pass")


# ------------------------------------------------------------------ a superuser's rows


def _forge_pass_rows(su, job_id, session, *, signature=None, key_id=None):
    """As superuser with every trigger off: the job PASSED (with the given
    attestation), its PASS attempt, the session VERIFIED_PASS."""
    with _unguarded(su, "VerificationJob", "VerificationAttempt", "LabSession"):
        su.execute("""UPDATE "VerificationJob" SET status = 'PASSED', "runCount" = 1,
                        "startedAt" = timezone('UTC', now()),
                        "completedAt" = timezone('UTC', now()), "exitCode" = 0,
                        "attestationSignature" = %s, "attestationKeyId" = %s
                      WHERE id = %s""", (signature, key_id, job_id))
        su.execute("""INSERT INTO "VerificationAttempt"
                        ("sessionId", "commitSha", result, logs, "verificationJobId")
                      SELECT "sessionId", "commitSha", 'PASS', %s, id
                      FROM "VerificationJob" WHERE id = %s""",
                   (Jsonb({"summary": "forged"}), job_id))
        su.execute("""UPDATE "LabSession" SET status = 'VERIFIED_PASS',
                        "completedAt" = timezone('UTC', now()) WHERE id = %s""", (session,))


def test_superuser_direct_row_writes_are_rejected(db, w):
    job = _other_job(w)
    _forge_pass_rows(w.su, job["id"], w.other)
    c = _check(db, w.keys)
    _fails_naming(c, str(job["id"]), "no attestation")
    _fails_naming(c, str(w.other), "without an attested pass")


def test_signature_copied_from_another_job_is_rejected(db, w):
    sig, kid = w.owner.execute('SELECT "attestationSignature", "attestationKeyId" FROM '
                               '"VerificationJob" WHERE id = %s', (w.passed["id"],)).fetchone()
    job = _other_job(w)
    _forge_pass_rows(w.su, job["id"], w.other, signature=sig, key_id=kid)
    c = _check(db, w.keys)
    _fails_naming(c, str(job["id"]), "signature does not match the statement")
    _fails_naming(c, str(w.other), "without an attested pass")


def test_rewritten_result_after_a_genuine_signed_fail_is_rejected(db, w):
    job = _other_job(w)
    got = claim(w.worker, "worker-b")
    attest.complete_attested(w.worker, got, "worker-b", "FAILED", 1, {"summary": "red"},
                             w.key, KID)
    assert _check(db, w.keys).status == "info"          # a signed FAIL is no pass
    with _unguarded(w.su, "VerificationAttempt"):        # the attempt alone says PASS
        w.su.execute("""UPDATE "VerificationAttempt" SET result = 'PASS'
                        WHERE "verificationJobId" = %s""", (job["id"],))
    _fails_naming(_check(db, w.keys), f"job {job['id']}", "they disagree")
    with _unguarded(w.su, "VerificationJob", "LabSession"):   # then the job and session
        w.su.execute("""UPDATE "VerificationJob" SET status = 'PASSED', "exitCode" = 0
                        WHERE id = %s""", (job["id"],))
        w.su.execute("""UPDATE "LabSession" SET status = 'VERIFIED_PASS',
                        "completedAt" = timezone('UTC', now()) WHERE id = %s""", (w.other,))
    c = _check(db, w.keys)
    _fails_naming(c, str(job["id"]), "signature does not match the statement")
    _fails_naming(c, str(w.other), "without an attested pass")


def test_rewritten_logs_of_a_signed_pass_are_rejected(db, w):
    with _unguarded(w.su, "VerificationAttempt"):
        w.su.execute("""UPDATE "VerificationAttempt"
                        SET logs = jsonb_set(logs, '{tests,failed}', '3')
                        WHERE "verificationJobId" = %s""", (w.passed["id"],))
    _fails_naming(_check(db, w.keys), str(w.passed["id"]), "signature does not match")


def test_jobless_pass_after_the_pack_is_rejected(db, w):
    with _unguarded(w.su, "LabSession"):
        w.su.execute("""UPDATE "LabSession" SET status = 'VERIFIED_PASS',
                        "completedAt" = timezone('UTC', now()) WHERE id = %s""", (w.other,))
    _fails_naming(_check(db, w.keys), str(w.other), "without any job, completed after the pack")


# ------------------------------------------------------------------ the API's input


def _now():
    return attest.now_ms()


@pytest.mark.parametrize("sig, kid, when, field", [
    (b"\x01" * 63, KID, "now", "p_attestation_signature"),
    (b"\x01" * 65, KID, "now", "p_attestation_signature"),
    (b"\x01" * 64, None, "now", "p_attestation_key_id"),
    (None, KID, "now", "p_attestation_signature"),
    (b"\x01" * 64, "bad key id", "now", "p_attestation_key_id"),
    (b"\x01" * 64, "-lead", "now", "p_attestation_key_id"),
    (b"\x01" * 64, "k" * 129, "now", "p_attestation_key_id"),
    (b"\x01" * 64, KID, None, "p_completed_at"),
    (b"\x01" * 64, KID, "micro", "p_completed_at"),
    (b"\x01" * 64, KID, "future", "p_completed_at"),
    (b"\x01" * 64, KID, "before start", "p_completed_at"),
])
def test_malformed_attestation_is_refused_and_nothing_changes(db, w, sig, kid, when, field):
    job = _other_job(w)
    got = claim(w.worker, "worker-b")
    t = {"now": _now(), None: None, "micro": _now() + dt.timedelta(microseconds=1),
         "future": _now() + dt.timedelta(minutes=5),
         "before start": _now() - dt.timedelta(hours=1)}[when]
    before = w.owner.execute('SELECT to_jsonb(j) FROM "VerificationJob" j WHERE id = %s',
                             (job["id"],)).fetchone()[0]
    with raises_sqlstate("22023") as e:
        w.worker.execute(attest.COMPLETE_SQL, (got["id"], "worker-b", "PASSED", 0,
                                               Jsonb({}), got["leaseToken"], sig, kid, t))
    assert field in str(e.value)
    assert w.owner.execute('SELECT to_jsonb(j) FROM "VerificationJob" j WHERE id = %s',
                           (job["id"],)).fetchone()[0] == before
    assert w.owner.execute('SELECT count(*) FROM "VerificationAttempt" WHERE '
                           '"verificationJobId" = %s', (job["id"],)).fetchone()[0] == 0


def test_attested_logs_may_not_carry_the_job_member(db, w):
    _other_job(w)
    got = claim(w.worker, "worker-b")
    with raises_sqlstate("22023") as e:
        attest.complete_attested(w.worker, got, "worker-b", "PASSED", 0,
                                 {"job": {"id": "x"}}, w.key, KID)
    assert "p_logs" in str(e.value)


def test_stored_attestation_never_changes(db, w):
    for conn in (w.owner, w.su):
        with raises_sqlstate("FQ001"):
            conn.execute("""UPDATE "VerificationJob" SET "attestationKeyId" = 'other'
                            WHERE id = %s""", (w.passed["id"],))
    with raises_sqlstate("42501"):
        w.worker.execute("""UPDATE "VerificationJob" SET "attestationSignature" = NULL
                            WHERE id = %s""", (w.passed["id"],))


def test_signed_completion_time_is_the_stored_one(db, w):
    _other_job(w)
    got = claim(w.worker, "worker-b")
    when = _now()
    row = attest.complete_attested(w.worker, got, "worker-b", "FAILED", 1, {}, w.key, KID,
                                   completed_at=when).fetchone()
    stored = w.owner.execute('SELECT "completedAt" FROM "VerificationJob" WHERE id = %s',
                             (got["id"],)).fetchone()[0]
    assert stored == when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    assert row is not None


# ------------------------------------------------------------------ legacy passes


def test_legacy_passes_are_reported_not_failed_and_a_new_jobless_one_fails(baseline_db,
                                                                          sql_root):
    """Production's passes from before the pack (no job; copied from VerificationLog)
    cannot be attested: with keys registered they are info. A session made to look
    like one after the pack (no job, completed now) fails."""
    from harness import apply as A
    from tests.prodlike import seed_production_like
    owner = baseline_db.connect("owner")
    seed = seed_production_like(owner)
    A.apply(baseline_db.dsn(), sql_root=sql_root)
    _, pub = attest.generate()
    keys = attest.parse_worker_keys({KID: pub})
    rep = V.verify(baseline_db.dsn("owner"), worker_keys=keys)
    c = rep.by_name("worker_attestations")
    assert c.status == "info", c.findings
    legacy = " ".join(" ".join(f.get("rows", [])) for f in c.findings
                      if "legacy VERIFIED_PASS" in f["message"])
    for sid in seed["sessions"]["VERIFIED_PASS"]:
        assert str(sid) in legacy
    assert any("legacy PASS attempts" in f["message"] for f in c.findings), c.findings
    active = seed["sessions"]["IN_PROGRESS"][0]
    su = baseline_db.connect("superuser")
    with _unguarded(su, "LabSession"):
        su.execute("""UPDATE "LabSession" SET status = 'VERIFIED_PASS',
                        "completedAt" = timezone('UTC', now()) WHERE id = %s""", (active,))
    _fails_naming(_check(baseline_db, keys), str(active),
                  "without any job, completed after the pack")


def test_cli_verify_worker_keys_exits_0_for_signed_passes_and_1_for_a_forged_one(
        db, w, tmp_path, capsys):
    from harness.cli import main as cli_main
    keys = tmp_path / "worker-keys.json"
    keys.write_text(json.dumps({KID: attest.public_hex(w.key.public_key())}))
    args = ["verify", "--target", db.dsn(), "--no-reference", "--worker-keys", str(keys),
            "--json"]
    assert cli_main(args) == 0
    capsys.readouterr()
    job = _other_job(w)
    _forge_pass_rows(w.su, job["id"], w.other)
    assert cli_main(args) == 1
    doc = json.loads(capsys.readouterr().out)
    c = next(x for x in doc["checks"] if x["name"] == "worker_attestations")
    assert c["status"] == "fail" and str(job["id"]) in json.dumps(c["findings"])
