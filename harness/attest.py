"""Worker attestations: the statement a verification worker signs, signing, checking.

A worker that completes a job signs, with an Ed25519 key the database never
holds, the statement ``forgea.attestation.v1`` of what it concluded, and passes
the signature and its key id to complete_verification_job (docs/security.md,
"Worker attestations"). ``harness verify --worker-keys FILE`` recomputes the
statement from the rows and checks the signature against public keys kept
outside the database.

Statement, version 1: the UTF-8 bytes of ten netstrings
``<decimal byte length>:<value>,`` in this order:

  F1  the literal ``forgea.attestation.v1``
  F2  job id          F3  session id          (lowercase uuid, 8-4-4-4-12)
  F4  commit SHA (lowercase hex, as stored)
  F5  lab version id (lowercase uuid)
  F6  result: the job's terminal status, ``PASSED``, ``FAILED`` or ``ERROR``
  F7  logs digest: 64 lowercase hex digits of SHA-256(canonical_json(logs)),
      ``logs`` being the JSON object the worker passes as p_logs (NULL: ``{}``),
      which is the attempt's ``logs`` without its top-level ``job`` member
  F8  completion time, UTC, ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (what p_completed_at
      carries and the job's ``completedAt`` stores)
  F9  the key id
  F10 the literal ``end``

canonical_json: no whitespace; object members sorted by key in Unicode code
point order; strings with ``"`` ``\\`` and the controls U+0000-U+001F escaped
(``\\b \\f \\n \\r \\t``, others ``\\u00xx`` lowercase), every other character
as itself; numbers by their exact decimal value: an integral value as an
integer without sign for zero and without exponent (``1.0``, ``1e2`` and
``100`` are ``1``... ``100``), any other as plain decimal without exponent or
trailing zeros (``0.50`` -> ``0.5``); ``true``, ``false``, ``null``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import hashlib
import json
import re
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

DOMAIN = "forgea.attestation.v1"
RESULTS = ("PASSED", "FAILED", "ERROR")
KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
            "\r": "\\r", "\t": "\\t"}
_WIDE = decimal.Context(prec=200_000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


# ------------------------------------------------------------------ canonical JSON

def _string(s: str) -> str:
    return '"' + "".join(_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 else ch)
                         for ch in s) + '"'


def _number(n) -> str:
    if isinstance(n, float):
        if n != n or n in (float("inf"), float("-inf")):
            raise ValueError(f"logs: {n!r} is not a JSON number")
        n = decimal.Decimal(repr(n))
    d = decimal.Decimal(n)
    if not d.is_finite():
        raise ValueError(f"logs: {n!r} is not a JSON number")
    if d == 0:
        return "0"
    d = d.normalize(_WIDE)
    if d == d.to_integral_value(context=_WIDE):
        return str(int(d))
    return format(d, "f")


def canonical_json(value) -> bytes:
    """The canonical UTF-8 serialisation of a JSON value (module docstring)."""
    out: list[str] = []

    def emit(v):
        if v is None:
            out.append("null")
        elif v is True:
            out.append("true")
        elif v is False:
            out.append("false")
        elif isinstance(v, (int, float, decimal.Decimal)):
            out.append(_number(v))
        elif isinstance(v, str):
            out.append(_string(v))
        elif isinstance(v, (list, tuple)):
            out.append("[")
            for i, x in enumerate(v):
                if i:
                    out.append(",")
                emit(x)
            out.append("]")
        elif isinstance(v, dict):
            out.append("{")
            for i, k in enumerate(sorted(v)):
                if not isinstance(k, str):
                    raise ValueError(f"logs: object key {k!r} is not a string")
                if i:
                    out.append(",")
                out.append(_string(k))
                out.append(":")
                emit(v[k])
            out.append("}")
        else:
            raise ValueError(f"logs: {type(v).__name__} is not a JSON value")

    emit(value)
    return "".join(out).encode("utf-8")


def parse_logs(text: str):
    """JSON text (as PostgreSQL prints a jsonb) to values whose numbers keep their
    exact decimal value."""
    return json.loads(text, parse_float=decimal.Decimal, parse_int=int,
                      parse_constant=lambda c: (_ for _ in ()).throw(
                          ValueError(f"logs: {c} is not a JSON number")))


def logs_digest(logs) -> str:
    """F7: SHA-256 of canonical_json(logs), 64 lowercase hex digits (None = {})."""
    return hashlib.sha256(canonical_json({} if logs is None else logs)).hexdigest()


# ------------------------------------------------------------------ the statement

def _netstring(value: str) -> bytes:
    b = value.encode("utf-8")
    return str(len(b)).encode("ascii") + b":" + b + b","


def _uuid(v, field: str) -> str:
    try:
        return str(uuid.UUID(str(v)))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{field}: not a uuid: {v!r}") from e


def timestamp_text(t: dt.datetime) -> str:
    """F8: UTC, millisecond precision (a naive datetime is taken as UTC)."""
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if t.microsecond % 1000:
        raise ValueError(f"completed_at: {t.isoformat()} is finer than a millisecond")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def statement(job_row: dict, *, result: str, logs_sha256: str, completed_at: dt.datetime,
              key_id: str) -> bytes:
    """The bytes a worker signs, from the job's row (``id``, ``sessionId``,
    ``commitSha``, ``labVersionId``: what claim_verification_job returned)."""
    if result not in RESULTS:
        raise ValueError(f"result: must be one of {', '.join(RESULTS)} (got {result!r})")
    if not re.fullmatch(r"[0-9a-f]{64}", logs_sha256 or ""):
        raise ValueError(f"logs_sha256: must be 64 lowercase hex digits (got {logs_sha256!r})")
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise ValueError(f"key_id: must be 1-128 of [A-Za-z0-9._:-] (got {key_id!r})")
    fields = [DOMAIN, _uuid(job_row["id"], "id"), _uuid(job_row["sessionId"], "sessionId"),
              str(job_row["commitSha"]), _uuid(job_row["labVersionId"], "labVersionId"),
              result, logs_sha256, timestamp_text(completed_at), key_id, "end"]
    return b"".join(_netstring(f) for f in fields)


def now_ms() -> dt.datetime:
    """The current UTC time at millisecond precision (what p_completed_at takes)."""
    t = dt.datetime.now(dt.timezone.utc)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def sign(private_key: Ed25519PrivateKey, job_row: dict, *, result: str, logs,
         completed_at: dt.datetime, key_id: str) -> bytes:
    """The 64-byte signature over statement(...) with ``logs`` the object passed as p_logs."""
    return private_key.sign(statement(job_row, result=result, logs_sha256=logs_digest(logs),
                                      completed_at=completed_at, key_id=key_id))


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        public_key.verify(bytes(signature), message)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


# ------------------------------------------------------------------ keys

def generate() -> tuple[Ed25519PrivateKey, str]:
    """A new key and its public key as 64 hex digits."""
    key = Ed25519PrivateKey.generate()
    return key, public_hex(key.public_key())


def public_hex(pub: Ed25519PublicKey) -> str:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def private_hex(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption()).hex()


def _raw32(text, what: str) -> bytes:
    """32 bytes from 64 hex digits or base64 (standard or URL-safe, padded or not)."""
    if not isinstance(text, str):
        raise ValueError(f"{what}: must be a string (hex or base64 of 32 bytes), "
                         f"got {type(text).__name__}")
    s = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", s):
        return bytes.fromhex(s)
    try:
        raw = base64.b64decode(s.replace("-", "+").replace("_", "/") + "=" * (-len(s) % 4),
                               validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{what}: must be an Ed25519 key of 32 bytes, as 64 hex digits "
                         "or base64")
    return raw


def load_private(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw32(text, "private key"))


def parse_worker_keys(doc) -> dict[str, Ed25519PublicKey]:
    """``{"key id": "public key (hex or base64)", ...}`` -> keys; ValueError naming the
    field on any malformed shape (at least one key)."""
    if not isinstance(doc, dict):
        raise ValueError(f"must be a JSON object of key id -> Ed25519 public key, "
                         f"got {type(doc).__name__}")
    if not doc:
        raise ValueError("registers no key (an empty object): give at least one "
                         "key id -> public key")
    keys = {}
    for kid, val in doc.items():
        if not KEY_ID_RE.fullmatch(kid):
            raise ValueError(f"key id {kid[:80]!r}: must be 1-128 of [A-Za-z0-9._:-], "
                             "starting with a letter or digit")
        raw = _raw32(val, f"key {kid!r}")
        keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


def load_worker_keys(path) -> dict[str, Ed25519PublicKey]:
    """Read and validate a --worker-keys file (ValueError / OSError on failure)."""
    with open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e}") from e
    return parse_worker_keys(doc)


# ------------------------------------------------------------------ the worker's call

COMPLETE_SQL = (
    'SELECT * FROM public.complete_verification_job(%s, %s, %s::public."VerificationJobStatus",'
    ' %s, %s, p_lease_token => %s, p_attestation_signature => %s,'
    ' p_attestation_key_id => %s, p_completed_at => %s)')


def complete_attested(conn, job_row: dict, worker_id: str, status: str, exit_code: int,
                      logs: dict, private_key: Ed25519PrivateKey, key_id: str, *,
                      completed_at: dt.datetime | None = None):
    """A reference worker's completion: sign, then complete_verification_job with the
    signature, the key id and the signed completion time. ``job_row`` is what
    claim_verification_job returned (its ``leaseToken`` is passed when present).
    Returns the cursor of the call (the job row)."""
    from psycopg.types.json import Jsonb
    when = completed_at or now_ms()
    sig = sign(private_key, job_row, result=status, logs=logs, completed_at=when,
               key_id=key_id)
    return conn.execute(COMPLETE_SQL, (job_row["id"], worker_id, status, exit_code,
                                       Jsonb(logs), job_row.get("leaseToken"), sig, key_id,
                                       when if when.tzinfo else
                                       when.replace(tzinfo=dt.timezone.utc)))
