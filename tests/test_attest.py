"""harness.attest and its CLI: the statement layout, canonical JSON, key files."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import subprocess
import sys

import pytest

from harness import attest

JOB = {"id": "0b8a4c2e-5f1d-4e3a-9c7b-2d6e8f0a1b3c",
       "sessionId": "7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
       "commitSha": "3f786850e387550fdab836ed7e6dc881de23001b",
       "labVersionId": "c2d3e4f5-a6b7-4c8d-9e0f-1a2b3c4d5e6f"}
WHEN = dt.datetime(2026, 12, 7, 3, 14, 15, 926000, tzinfo=dt.timezone.utc)
LOGS = {"summary": "all green", "tests": {"passed": 12, "failed": 0}, "ratio": 0.50}


def _example_key():
    return attest.load_private(hashlib.sha256(b"forgea example key").hexdigest())


def test_documented_example_is_reproduced_byte_for_byte():
    """docs/security.md, "Worker attestations": the example statement and signature."""
    msg = attest.statement(JOB, result="PASSED", logs_sha256=attest.logs_digest(LOGS),
                           completed_at=WHEN, key_id="worker-1")
    assert msg == (
        b"21:forgea.attestation.v1,36:0b8a4c2e-5f1d-4e3a-9c7b-2d6e8f0a1b3c,"
        b"36:7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b,"
        b"40:3f786850e387550fdab836ed7e6dc881de23001b,"
        b"36:c2d3e4f5-a6b7-4c8d-9e0f-1a2b3c4d5e6f,6:PASSED,"
        b"64:83e2dc201504655acd82c3be5810ce6fa0197a353968fd7ff97c78e6c055587e,"
        b"24:2026-12-07T03:14:15.926Z,8:worker-1,3:end,")
    key = _example_key()
    assert attest.public_hex(key.public_key()) == \
        "ad0ad7ae8ef1dbc894e416f9c01756196a3bbf560dbabefd509de740914b06cc"
    sig = attest.sign(key, JOB, result="PASSED", logs=LOGS, completed_at=WHEN,
                      key_id="worker-1")
    assert sig.hex() == ("65995872760d13d2d7cc17aeb9f652f40daa658f127918b7c665d3172ed92e9e"
                         "f8e7e3628375429bac670cacc17edbea9b8ab67a75f2276dc032e87670350908")
    assert attest.verify(key.public_key(), sig, msg)
    assert not attest.verify(key.public_key(), sig, msg.replace(b"PASSED", b"FAILED"))


@pytest.mark.parametrize("a, b", [
    ({"b": 1, "a": [1.0, 2]}, '{"a":[1,2],"b":1}'),
    ({"n": 1e16}, '{"n":10000000000000000}'),
    ({"n": decimal.Decimal("1.50")}, '{"n":1.5}'),
    ({"n": decimal.Decimal("-0")}, '{"n":0}'),
    ({"n": decimal.Decimal("1E+2")}, '{"n":100}'),
    ({"n": 1.5e-7}, '{"n":0.00000015}'),
    ({"s": "\"\\\n\x01é\u2028"}, '{"s":"\\"\\\\\\n\\u0001é\u2028"}'),
    ({"é": 1, "z": 2, "Z": 3}, '{"Z":3,"z":2,"é":1}'),
])
def test_canonical_json_is_what_survives_jsonb(a, b):
    assert attest.canonical_json(a) == b.encode("utf-8")
    # the text PostgreSQL prints for the stored jsonb parses back to the same bytes
    assert attest.canonical_json(attest.parse_logs(b)) == b.encode("utf-8")


def test_statement_fields_are_injective():
    """A value containing the separator cannot shift fields (netstrings)."""
    a = attest.statement(dict(JOB, commitSha="a" * 40), result="PASSED",
                         logs_sha256="0" * 64, completed_at=WHEN, key_id="k:1")
    b = attest.statement(dict(JOB, commitSha="a" * 40), result="PASSED",
                         logs_sha256="0" * 64, completed_at=WHEN, key_id="k")
    assert a != b and b"3:k:1," in a


@pytest.mark.parametrize("doc, field", [
    ("not json", "not JSON"),
    ("[]", "must be a JSON object"),
    ("{}", "registers no key"),
    ('{"bad id": "' + "00" * 32 + '"}', "key id 'bad id'"),
    ('{"k1": "abcd"}', "key 'k1'"),
    ('{"k1": 7}', "key 'k1': must be a string"),
    ('{"k1": "' + "00" * 33 + '"}', "key 'k1'"),
])
def test_malformed_worker_keys_file_exits_2_naming_the_field(tmp_path, doc, field):
    f = tmp_path / "keys.json"
    f.write_text(doc)
    r = subprocess.run([sys.executable, "-m", "harness.cli", "verify", "--target",
                        "postgresql://nobody@127.0.0.1:1/none", "--worker-keys", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--worker-keys" in r.stderr and field in r.stderr, r.stderr


def test_worker_keys_accept_hex_and_base64():
    import base64
    key, pub = attest.generate()
    raw = bytes.fromhex(pub)
    keys = attest.parse_worker_keys({"a": pub, "b": base64.b64encode(raw).decode(),
                                     "c": base64.urlsafe_b64encode(raw).decode().rstrip("=")})
    assert {attest.public_hex(k) for k in keys.values()} == {pub}


def test_cli_keygen_then_sign_verifies(tmp_path):
    priv = tmp_path / "w.key"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "attest", "keygen", "--key-id",
                        "worker-9", "--private-out", str(priv)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    keys = attest.parse_worker_keys(json.loads(r.stdout))
    assert priv.stat().st_mode & 0o077 == 0
    (tmp_path / "job.json").write_text(json.dumps(JOB))
    (tmp_path / "logs.json").write_text(json.dumps(LOGS))
    r = subprocess.run([sys.executable, "-m", "harness.cli", "attest", "sign", "--key",
                        str(priv), "--key-id", "worker-9", "--job", str(tmp_path / "job.json"),
                        "--result", "PASSED", "--logs", str(tmp_path / "logs.json"),
                        "--completed-at", "2026-12-07T03:14:15.926Z"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    msg = attest.statement(JOB, result="PASSED", logs_sha256=attest.logs_digest(LOGS),
                           completed_at=WHEN, key_id="worker-9")
    assert out["statement"].encode() == msg
    assert attest.verify(keys["worker-9"], bytes.fromhex(out["signature"]), msg)
    again = subprocess.run([sys.executable, "-m", "harness.cli", "attest", "keygen",
                            "--key-id", "worker-9", "--private-out", str(priv)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--private-out" in again.stderr
