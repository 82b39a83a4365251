"""The results section of a checkpoint (document format v2).

A v1 checkpoint commits to the push ledger only (every session's chain head).
A v2 checkpoint also commits to the outcomes that were final when it was taken,
so that rewriting a FAIL into a PASS afterwards is caught even by someone who
holds the owner's or a superuser's credentials and disables every trigger:

* every verification attempt: id, sessionId, commitSha, result,
  verificationJobId and ``logsDigest`` (SHA-256 of the ``logs`` jsonb's text,
  which PostgreSQL writes in one canonical form);
* every job in a terminal status (PASSED, FAILED, ERROR): id, status,
  labAttemptId, runCount, completedAt;
* every session in a terminal status (VERIFIED_PASS, FAILED): id, status,
  completedAt.

They are listed under the document's ``results`` key, folded into a Merkle
tree (the RFC 6962 shape of ``harness.ledger``) whose root is ``results.root``,
and the document's ``root`` becomes::

    root = SHA-256(0x02 || heads root || results root)

(0x02 keeps it apart from the tree's leaves, 0x00, and nodes, 0x01). A leaf is
``SHA-256(0x00 || netstring(kind) || netstring(field) ...)`` with the fields in
the order above (NULL ``-,``; numbers in decimal), so no two entries share one.

What it cannot prove: anything that did not exist or was not final at the
checkpoint (a job still QUEUED, a session still IN_PROGRESS, an attempt written
afterwards): the next checkpoint covers those.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from .ledger import CheckpointFileError, merkle_root, netstring

CHECKPOINT_FORMAT_V2 = "forgea.ledger-checkpoint.v2"

TERMINAL_JOB = ("PASSED", "FAILED", "ERROR")
TERMINAL_SESSION = ("VERIFIED_PASS", "FAILED")

#: kind -> (the entry's fields in leaf order, the SQL reading them in id order)
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "attempts": (("id", "sessionId", "commitSha", "result", "verificationJobId",
                  "logsDigest"),
                 'SELECT a."id"::text, a."sessionId"::text, a."commitSha", '
                 'a."result"::text, a."verificationJobId"::text, a."logs"::text '
                 'FROM public."VerificationAttempt" AS a ORDER BY a."id"'),
    "jobs": (("id", "status", "labAttemptId", "runCount", "completedAt"),
             'SELECT j."id"::text, j."status"::text, j."labAttemptId"::text, '
             'j."runCount", j."completedAt"::text '
             'FROM public."VerificationJob" AS j '
             "WHERE j.\"status\"::text IN ('PASSED', 'FAILED', 'ERROR') ORDER BY j.\"id\""),
    "sessions": (("id", "status", "completedAt"),
                 'SELECT s."id"::text, s."status"::text, s."completedAt"::text '
                 'FROM public."LabSession" AS s '
                 "WHERE s.\"status\"::text IN ('VERIFIED_PASS', 'FAILED') ORDER BY s.\"id\""),
}
_TABLES = {"attempts": "VerificationAttempt", "jobs": "VerificationJob",
           "sessions": "LabSession"}
_NAMES = {"attempts": "verification attempt", "jobs": "job", "sessions": "session"}


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _exists(conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (f'public."{table}"',)).fetchone()[0]


def read(conn) -> dict[str, list[dict]]:
    """Every attempt, terminal job and terminal session, in id order (in ``conn``'s
    transaction: take it in the ledger's snapshot)."""
    out: dict[str, list[dict]] = {}
    for kind, (fields, query) in KINDS.items():
        out[kind] = []
        if not _exists(conn, _TABLES[kind]):
            continue
        with conn.cursor(name=f"forgea_results_{kind}") as cur:
            cur.itersize = 2000
            cur.execute(query)
            for rec in cur:
                values = list(rec)
                if kind == "attempts":
                    values[5] = _digest(values[5])
                out[kind].append(dict(zip(fields, values)))
    return out


def leaf(kind: str, entry: dict) -> bytes:
    fields = KINDS[kind][0]
    parts = [netstring(kind)] + [
        netstring(None if entry[f] is None else str(entry[f])) for f in fields]
    return hashlib.sha256(b"\x00" + b"".join(parts)).digest()


def results_root(results: dict[str, list[dict]]) -> str:
    return merkle_root([leaf(kind, e) for kind in KINDS for e in results[kind]]).hex()


def combined_root(heads_root: str, res_root: str) -> str:
    """The v2 document's root: SHA-256(0x02 || heads root || results root)."""
    return hashlib.sha256(b"\x02" + bytes.fromhex(heads_root)
                          + bytes.fromhex(res_root)).hexdigest()


def section(conn) -> dict:
    """The ``results`` key of a v2 document."""
    res = read(conn)
    return {**res, "root": results_root(res)}


# ---------------------------------------------------------------------------
# validating a document's results section

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def _uuid(v) -> bool:
    try:
        return isinstance(v, str) and str(uuid.UUID(v)) == v
    except ValueError:
        return False


def _is_ts(v) -> bool:
    return isinstance(v, str) and len(v) <= 64     # the column's ISO text, as read


_CHECKS = {
    "attempts": {"id": _uuid, "sessionId": _uuid,
                 "commitSha": lambda v: isinstance(v, str),
                 "result": lambda v: v in ("PASS", "FAIL"),
                 "verificationJobId": lambda v: v is None or _uuid(v),
                 "logsDigest": lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v))},
    "jobs": {"id": _uuid, "status": lambda v: v in TERMINAL_JOB, "labAttemptId": _uuid,
             "runCount": lambda v: isinstance(v, int) and not isinstance(v, bool)
             and 0 <= v <= 2 ** 31 - 1,
             "completedAt": lambda v: v is None or _is_ts(v)},
    "sessions": {"id": _uuid, "status": lambda v: v in TERMINAL_SESSION,
                 "completedAt": lambda v: v is None or _is_ts(v)},
}


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate(doc: dict, name: str) -> str:
    """The results root of a v2 document's ``results`` section, every field checked;
    CheckpointFileError (exit 2) naming the first wrong field otherwise."""
    res = doc.get("results")
    if not isinstance(res, dict):
        raise CheckpointFileError(f"{name}: field results: an object is expected, found "
                                  f"{type(res).__name__}")
    for kind in KINDS:
        entries = res.get(kind)
        if not isinstance(entries, list):
            raise CheckpointFileError(f"{name}: field results.{kind}: a list is expected, "
                                      f"found {type(entries).__name__}")
        seen = set()
        for i, e in enumerate(entries):
            where = f"{name}: results.{kind}[{i}]"
            if not isinstance(e, dict):
                raise CheckpointFileError(f"{where}: an object is expected, found "
                                          f"{type(e).__name__}")
            for field, ok in _CHECKS[kind].items():
                if field not in e:
                    raise CheckpointFileError(f"{where}: field {field} is missing")
                if not ok(e[field]):
                    raise CheckpointFileError(f"{where}.{field}: not a value it can hold: "
                                              f"{_show(e[field])}")
            if e["id"] in seen:
                raise CheckpointFileError(f"{where}.id: {e['id']} appears twice")
            seen.add(e["id"])
    root = res.get("root")
    if not isinstance(root, str) or not _HEX64.fullmatch(root):
        raise CheckpointFileError(f"{name}: field results.root: 64 lowercase hex digits "
                                  f"expected, found {_show(root)}")
    if results_root(res) != root:
        raise CheckpointFileError(f"{name}: field results.root: its root does not match "
                                  "its results (the file was edited)")
    return root


# ---------------------------------------------------------------------------
# checking a document against the live database, and two documents offline


def _differences(kind: str, committed: list[dict], now: dict[str, dict]) -> list[str]:
    problems = []
    what = _NAMES[kind]
    for e in committed:
        live = now.get(e["id"])
        if live is None:
            problems.append(f"{what} {e['id']}: gone since the checkpoint (or no longer "
                            "terminal)" if kind != "attempts"
                            else f"{what} {e['id']}: gone since the checkpoint")
            continue
        changed = [f"{f} {e[f]!r} -> {live[f]!r}" for f in KINDS[kind][0]
                   if str(e[f]) != str(live[f]) or (e[f] is None) != (live[f] is None)]
        if changed:
            problems.append(f"{what} {e['id']}: rewritten since the checkpoint: "
                            + "; ".join(changed))
    return problems


def check(conn, doc: dict) -> list[str]:
    """Every result a v2 checkpoint committed to is still there, unchanged (in
    ``conn``'s transaction). A v1 document commits to none: nothing to check."""
    if doc.get("format") != CHECKPOINT_FORMAT_V2:
        return []
    now = read(conn)
    problems = []
    for kind in KINDS:
        problems += _differences(kind, doc["results"][kind],
                                 {e["id"]: e for e in now[kind]})
    return problems


def compare(earlier: dict, later: dict) -> list[str]:
    """Offline: every result of ``earlier`` is in ``later`` unchanged (when both
    are v2 documents)."""
    if CHECKPOINT_FORMAT_V2 != earlier.get("format") \
            or CHECKPOINT_FORMAT_V2 != later.get("format"):
        return []
    problems = []
    for kind in KINDS:
        problems += _differences(kind, earlier["results"][kind],
                                 {e["id"]: e for e in later["results"][kind]})
    return problems
