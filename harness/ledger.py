"""The push ledger, checked without trusting the database's own code.

Three jobs, one module:

* **The byte layout** of a LabAttempt row hash (version 1), written once here and
  used by the recomputation and its tests (README, "The push ledger hash
  chain")::

      rowHash = SHA-256(netstring(F1) || ... || netstring(F16))

* **Independent recomputation** (``recompute``): streams every LabAttempt row in
  (sessionId, chainSeq) order through a server-side cursor and recomputes each
  ``rowHash`` and ``prevHash`` link in Python, never calling a function of the
  pack. It reports the first broken link of each session, and checks the
  ``PUSH_RECORDED`` anchors in AuditLog against the rows with plain SQL reads.
  Memory does not grow with the ledger: one session's state at a time.

* **Checkpoints** (``take_checkpoint``, ``check_checkpoint``, ``compare``): a
  JSON document committing to every session's newest (chainSeq, rowHash),
  folded into one root by a Merkle tree (RFC 6962 shape) over the sorted heads,
  kept off the database by the operator. A later ledger must still hold every
  head at its position with the same hash, and every chain must still link to
  it; a later checkpoint must name the earlier one's root and heads. Documents
  of format v2 also commit to every verification attempt, terminal job and
  terminal session (``harness.ledger_results``, folded into the root).

Timestamps are read as text (``DateStyle`` ISO) and formatted in Python the way
``to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`` does, so that no database
function is trusted and every year the column can hold is handled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

import psycopg

from .errors import EXIT_USAGE, HarnessError, UsageError

LAYOUT = "forgea.LabAttempt.v1"
#: the ledger-only document format (still accepted); ``take_checkpoint`` writes
#: ``harness.ledger_results.CHECKPOINT_FORMAT_V2``, which adds the results
CHECKPOINT_FORMAT = "forgea.ledger-checkpoint.v1"
ZERO_HASH = bytes(32)
FILE_LISTS = ("added", "modified", "removed")
_FILE_KEYS = frozenset(FILE_LISTS)

# ---------------------------------------------------------------------------
# the byte layout


def netstring(value: str | None) -> bytes:
    """``<byte length>:<UTF-8 bytes>,``; NULL is ``-,``."""
    if value is None:
        return b"-,"
    raw = value.encode("utf-8")
    return b"%d:%b," % (len(raw), raw)


#: the ISO text of a ``timestamp(3)`` the layout admits: years 0001..9999 AD, at most
#: three fractional digits (a BC year, a fifth year digit, 'infinity' do not match)
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?")


def layout_timestamp(text: str | None) -> str | None:
    """An ISO ``timestamp(3)`` text as the layout writes it: YYYY-MM-DDTHH:MM:SS.mmmZ.

    ValueError for a value outside the layout's domain (the CHECKs of "LabAttempt"):
    to_char() spells a BC year like the AD one and both infinities as NULL, so
    such a value could stand for another one with the same hash.
    """
    if text is None:
        return None
    m = _TS.fullmatch(text)
    if m is None or text.startswith("0000"):
        raise ValueError(f"timestamp {text!r} has no place in the layout")
    # the pattern fixes every position: date, time and the fraction by slicing
    frac = m.group(7)
    return f"{text[:10]}T{text[11:19]}.{(frac or '').ljust(3, '0')}Z"


MAX_FILES = 3000


def outside_layout(r: "Row") -> str | None:
    """Why ``r`` holds a value the layout does not spell in exactly one way (the
    domain the CHECKs of "LabAttempt" admit), or None. A superuser can drop a
    CHECK; a row outside the domain is reported as edited even when its hash
    matches, since another value has the same bytes."""
    why, _ = _layout_domain(r)
    return why


def _layout_domain(r: "Row") -> tuple[str | None, tuple[str, str] | None]:
    """(why ``r`` is outside the layout's domain or None, and when inside, the
    layout's spelling of its two timestamps, so that hashing the row does not
    parse them again)."""
    files = r.changed_files
    if not isinstance(files, dict) or files.keys() != _FILE_KEYS:
        return "changedFiles outside the layout: exactly added, modified, removed expected", None
    for key in FILE_LISTS:
        items = files[key]
        if not isinstance(items, list) or len(items) > MAX_FILES:
            return (f"changedFiles.{key} outside the layout: a list of <= {MAX_FILES} "
                    "expected"), None
        for i in items:
            if not isinstance(i, str) or not i:
                return f"changedFiles.{key} outside the layout: non-empty strings expected", None
    if len(r.prev_hash) != 32:
        return "prevHash outside the layout: 32 bytes expected", None
    spelled = []
    for name, value in (("pushedAt", r.pushed_at), ("createdAt", r.created_at)):
        try:
            if value is None:
                raise ValueError
            spelled.append(layout_timestamp(value))
        except ValueError:
            return (f"{name} {str(value)[:40]!r} has no place in the layout "
                    "(years 0001..9999 AD only)"), None
    return None, (spelled[0], spelled[1])


class Row(NamedTuple):
    """One LabAttempt row as the layout sees it (timestamps as ISO text). A named
    tuple, not a frozen dataclass: the recomputation builds one per ledger row."""
    id: str
    session_id: str
    commit_sha: str
    delivery_id: str
    branch: str
    author_name: str
    author_email: str | None
    author_login: str | None
    changed_files: dict
    pushed_at: str
    created_at: str
    chain_seq: int
    prev_hash: bytes
    row_hash: bytes


def row_hash(r: Row, prev_hash: bytes | None = None) -> bytes:
    """SHA-256 of the layout of ``r`` (with ``prev_hash`` instead of r.prev_hash)."""
    return hashlib.sha256(layout_bytes(r, prev_hash)).digest()


_LAYOUT_NETSTRING = netstring(LAYOUT).decode()
_END_NETSTRING = netstring("end").decode()


def layout_bytes(r: Row, prev_hash: bytes | None = None,
                 times: tuple[str | None, str | None] | None = None) -> bytes:
    """The bytes the layout (version 1) hashes for ``r``: F1 .. F16 as netstrings.

    ``times``: pushedAt and createdAt as the layout spells them, when the caller
    has them already (``_layout_domain``); otherwise they are spelled here.
    Written for speed (the independent recomputation runs it once per ledger
    row): the netstrings are built as one text and encoded to UTF-8 once (the
    UTF-8 of a concatenation is the concatenation of the UTF-8s), each length
    counted in UTF-8 bytes (the character count when the value is ASCII).
    tests/attacks/test_hash_layout.py proves it against the SQL layout."""
    prev = r.prev_hash if prev_hash is None else prev_hash
    if times is None:
        times = (layout_timestamp(r.pushed_at), layout_timestamp(r.created_at))
    out = [_LAYOUT_NETSTRING]
    add = out.append
    files = r.changed_files
    if not isinstance(files, dict):
        files = {}
    values = [prev.hex(), r.id, r.session_id, r.commit_sha, r.delivery_id, r.branch,
              r.author_name, r.author_email, r.author_login]
    for key in FILE_LISTS:
        items = files.get(key)
        if not isinstance(items, list):
            values.append(None)
            continue
        values.append(str(len(items)))
        values.extend(None if item is None else str(item) for item in items)
    values.extend(times)
    for value in values:
        if value is None:
            add("-,")
        elif value.isascii():
            add(f"{len(value)}:{value},")
        else:
            add(f"{len(value.encode('utf-8'))}:{value},")
    add(_END_NETSTRING)
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------------------
# reading the ledger

def rows_sql(where: str | None = None, *, files_as_text: bool = False) -> str:
    """Every LabAttempt row (``a``) the layout reads, in Row's order, sorted by
    (sessionId, chainSeq); ``where``: an SQL condition on ``a`` (one part of the
    sessions, harness.ledger_parts); ``files_as_text``: changedFiles as its JSON
    text, for the caller to parse row by row (``_changed_files``)."""
    files = 'a."changedFiles"::text' if files_as_text else 'a."changedFiles"'
    return "\n".join([
        'SELECT a."id"::text, a."sessionId"::text, a."commitSha", a."deliveryId",',
        '       a."branch", a."authorName", a."authorEmail", a."authorLogin",',
        f'       {files}, a."pushedAt"::text, a."createdAt"::text,',
        '       a."chainSeq", a."prevHash", a."rowHash"',
        'FROM public."LabAttempt" AS a',
        *([f"WHERE {where}"] if where else []),
        'ORDER BY a."sessionId", a."chainSeq"'])


#: every row, changedFiles as jsonb
ROWS_SQL = rows_sql()

#: every anchor of every PUSH_RECORDED audit row, and the row it names. Each audit
#: row's metadata (TOASTed: a push of 100 commits is ~15 KB) is read once in the
#: subquery (OFFSET 0 keeps it apart): read per anchor, it was detoasted once per
#: anchor (at 100k ledger rows 2.6 s -> 0.6 s).
ANCHORS_SQL = """
    SELECT x."auditId", x."sessionId", e.v ->> 'id', e.v ->> 'chainSeq', e.v ->> 'rowHash',
           a."sessionId"::text, a."chainSeq", encode(a."rowHash", 'hex')
    FROM (
        SELECT al."id"::text AS "auditId", al."metadata" ->> 'sessionId' AS "sessionId",
               CASE WHEN jsonb_typeof(al."metadata" -> 'attempts') = 'array'
                   THEN al."metadata" -> 'attempts' ELSE '[]'::jsonb END AS "attempts"
        FROM public."AuditLog" AS al
        WHERE al."action" = 'PUSH_RECORDED' AND al."actorId" = 'github-webhook'
        OFFSET 0
    ) AS x
    CROSS JOIN LATERAL jsonb_array_elements(x."attempts") AS e (v)
    -- by the primary key (a text comparison of every row's id cannot use it);
    -- an id that is not a canonical uuid's text matches no row, as before
    LEFT JOIN public."LabAttempt" AS a ON a."id" = CASE
        WHEN e.v ->> 'id' ~ '^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$'
            THEN (e.v ->> 'id')::uuid END
"""


class _Snapshot:
    """A REPEATABLE READ, READ ONLY view in which rows and anchors agree.

    On an idle autocommit connection it opens (and afterwards rolls back) a
    transaction of its own; inside an open transaction (``harness verify``'s)
    it uses that one. Either way timestamps come out as ISO text in UTC.

    ``exported``: the snapshot helper processes import to share the walk
    (harness.ledger_parts). A transaction of its own exports it when the ledger
    is large enough to share; inside the caller's, only the caller can (a
    snapshot cannot be exported from a savepoint) and passes it as ``snapshot``.
    """

    def __init__(self, conn, snapshot: str | None = None, parts: int | None = None):
        self.conn = conn
        self.own = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        self.exported = snapshot
        self.parts = parts

    def __enter__(self):
        if self.own:
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            from . import ledger_parts
            self.exported = ledger_parts.export_if_shared(self.conn, self.parts)
        self.conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        self.conn.execute("SET LOCAL TimeZone = 'UTC'")
        return self

    def __exit__(self, *exc):
        if self.own:
            self.conn.execute("ROLLBACK")


class Unreadable(dict):
    """``changedFiles`` whose JSON text Python cannot read (a number too long for
    ``int``, nesting too deep): the row's hash cannot be recomputed, which the
    recomputation reports as an edited row, naming why."""

    def __init__(self, why: str):
        super().__init__()
        self.why = why


def _changed_files(text):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        return Unreadable(f"changedFiles cannot be read: {type(e).__name__}: "
                          f"{str(e)[:200]}")


def stream_rows(conn, batch: int = 5000, where: str | None = None):
    """Every LabAttempt row as a Row, in (sessionId, chainSeq) order, ``batch`` at a
    time; with ``where`` (an SQL condition on ``a``, from harness.ledger_parts), the
    rows of one part of the sessions."""
    # changedFiles as text: a value Python cannot load must not stop the
    # stream, only break its own row
    query = rows_sql(where, files_as_text=True)
    with conn.cursor(name="forgea_ledger_rows") as cur:
        cur.execute(query)
        for recs in _read_ahead(cur, batch):
            for rec in recs:
                # positional: a named tuple's keywords cost a dict per row
                yield Row(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7],
                          _changed_files(rec[8]), rec[9], rec[10], rec[11],
                          rec[12] or b"", rec[13] or b"")


def _read_ahead(cur, batch: int):
    """``cur.fetchmany(batch)`` one batch ahead, in a thread: the server reads and
    formats the next rows while Python hashes the current ones. An error of the
    fetch is raised here, in the caller's thread; a caller that stops early
    leaves no thread behind."""
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def fetch():
        try:
            while not stop.is_set():
                recs = cur.fetchmany(batch)
                ahead.put(recs)
                if not recs:
                    return
        except BaseException as e:  # noqa: BLE001 (handed to the caller's thread)
            ahead.put(e)

    reader = threading.Thread(target=fetch, name="ledger-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            recs = ahead.get()
            if isinstance(recs, BaseException):
                raise recs
            if not recs:
                return
            yield recs
    finally:
        stop.set()
        while reader.is_alive():
            try:
                ahead.get_nowait()
            except queue.Empty:
                pass
            reader.join(0.05)


# ---------------------------------------------------------------------------
# recomputation


@dataclass
class Break:
    session_id: str
    chain_seq: int
    row_id: str | None
    kind: str           # edited | relinked | missing | anchor
    detail: str

    def as_dict(self) -> dict:
        return {"sessionId": self.session_id, "chainSeq": self.chain_seq,
                "id": self.row_id, "kind": self.kind, "detail": self.detail}


@dataclass
class Recomputed:
    rows: int = 0
    sessions: int = 0
    seconds: float = 0.0
    breaks: list[Break] = field(default_factory=list)
    # every session's newest row as recomputed: session -> (chainSeq, rowHash)
    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    # how many processes walked the chains (harness.ledger_parts)
    parts: int = 1

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "sessions": self.sessions,
                "seconds": round(self.seconds, 3), "rows_per_s": round(self.rows_per_s),
                "breaks": [b.as_dict() for b in self.breaks]}


def _walk(rows, out: Recomputed, keep_heads: bool) -> None:
    session = None
    expect_seq, expect_prev, broken = 1, ZERO_HASH, False
    for r in rows:
        out.rows += 1
        if r.session_id != session:
            if session is not None and keep_heads and not broken:
                out.heads[session] = (expect_seq - 1, expect_prev)
            session, expect_seq, expect_prev, broken = r.session_id, 1, ZERO_HASH, False
            out.sessions += 1
        if broken:
            continue
        problem = None
        if r.chain_seq != expect_seq:
            problem = ("missing", f"chainSeq {expect_seq} expected, {r.chain_seq} found")
        elif r.prev_hash != expect_prev:
            problem = ("relinked", "prevHash is not the previous row's rowHash")
        elif isinstance(r.changed_files, Unreadable):
            problem = ("edited", r.changed_files.why)
        elif (domain := _layout_domain(r))[0] is not None:
            problem = ("edited", domain[0])
        else:
            try:
                if hashlib.sha256(layout_bytes(r, None, domain[1])).digest() != r.row_hash:
                    problem = ("edited", "rowHash does not match the row's content")
            except (ValueError, TypeError, RecursionError) as e:
                # a value the layout cannot represent (UnicodeError is a ValueError)
                problem = ("edited", f"{type(e).__name__}: {str(e)[:200]}")
        if problem:
            out.breaks.append(Break(r.session_id, r.chain_seq, r.id, *problem))
            broken = True
            continue
        expect_seq, expect_prev = expect_seq + 1, r.row_hash
    if session is not None and keep_heads and not broken:
        out.heads[session] = (expect_seq - 1, expect_prev)


def _check_anchors(conn, out: Recomputed) -> None:
    broken_sessions = {b.session_id for b in out.breaks}
    for audit_id, a_session, a_row, a_seq, a_hash, r_session, r_seq, r_hash in conn.execute(
            ANCHORS_SQL):
        if a_session in broken_sessions:
            continue
        if r_session is None:
            kind, detail = "missing", f"row named by AuditLog anchor {audit_id} is gone"
        elif (r_session, str(r_seq), r_hash) != (a_session, a_seq, a_hash):
            kind, detail = "anchor", f"row differs from AuditLog anchor {audit_id}"
        else:
            continue
        seq = int(a_seq) if a_seq and a_seq.isascii() and a_seq.isdigit() \
            and len(a_seq) < 19 else 0
        out.breaks.append(Break(a_session or "?", seq, a_row, kind, detail))
        broken_sessions.add(a_session)


def _recompute(conn, out: Recomputed, *, anchors: bool, keep_heads: bool, batch: int,
               snapshot: str | None, parts: int | None = None):
    from . import ledger_parts
    start = time.perf_counter()
    out.parts = ledger_parts.walk_all(conn, out, keep_heads=keep_heads, batch=batch,
                                      snapshot=snapshot, parts=parts)
    if anchors:
        _check_anchors(conn, out)
    out.seconds = time.perf_counter() - start
    out.breaks.sort(key=lambda b: (b.session_id, b.chain_seq))


def recompute(conn, *, anchors: bool = True, keep_heads: bool = False,
              batch: int = 5000, parts: int | None = None,
              snapshot: str | None = None) -> Recomputed:
    """Recompute every chain in Python (in ``conn``'s transaction, or one of its own).

    ``parts``: how many processes share the sessions (harness.ledger_parts); None
    lets the ledger's size and the machine's cores decide, 1 keeps it in this one.
    ``snapshot``: inside the caller's transaction, the snapshot it exported
    (``ledger_parts.export_if_shared``) for the helpers; without it, one process."""
    out = Recomputed()
    with _Snapshot(conn, snapshot, parts) as snap:
        _recompute(conn, out, anchors=anchors, keep_heads=keep_heads, batch=batch,
                   snapshot=snap.exported, parts=parts)
    return out


# ---------------------------------------------------------------------------
# checkpoints: a Merkle tree over the sorted session heads


def leaf_hash(session_id: str, chain_seq: int, head_hash: bytes) -> bytes:
    """H(0x00 || "sessionId:chainSeq:rowHash-hex") for one session head."""
    text = f"{session_id}:{chain_seq}:{head_hash.hex()}".encode()
    return hashlib.sha256(b"\x00" + text).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + merkle_root(leaves[:k]) + merkle_root(leaves[k:])).digest()


def _heads_list(heads: dict[str, tuple[int, bytes]]) -> list[dict]:
    return [{"sessionId": s, "chainSeq": seq, "rowHash": h.hex()}
            for s, (seq, h) in sorted(heads.items())]


def root_of(entries: list[dict]) -> str:
    return merkle_root([leaf_hash(e["sessionId"], int(e["chainSeq"]),
                                  bytes.fromhex(e["rowHash"])) for e in entries]).hex()


class CheckpointError(HarnessError):
    """A checkpoint cannot be taken or does not hold (exit 1)."""

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(message, details=details)


def take_checkpoint(conn, previous: dict | None = None) -> dict:
    """A checkpoint of the live ledger; refuses when any chain is broken or when
    the live ledger does not extend ``previous``."""
    from . import ledger_results
    with _Snapshot(conn) as snap:     # the heads and the results of one snapshot
        rec = recompute(conn, keep_heads=True, snapshot=snap.exported)
        if rec.breaks:
            raise CheckpointError("the ledger is broken; no checkpoint taken",
                                  [describe(b) for b in rec.breaks])
        entries = _heads_list(rec.heads)
        results = ledger_results.section(conn)
        doc = {
            "format": ledger_results.CHECKPOINT_FORMAT_V2,
            "takenAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "rows": rec.rows,
            "sessionCount": len(entries),
            "root": ledger_results.combined_root(root_of(entries), results["root"]),
            "previousRoot": None,
            "sessions": entries,
            "results": results,
        }
        if previous is not None:
            problems = check_checkpoint(conn, previous)
            if problems:
                raise CheckpointError("the live ledger does not extend the previous "
                                      "checkpoint", problems)
            doc["previousRoot"] = previous["root"]
        doc["legacy"] = legacy_section(conn, previous)
    return doc


def record(conn, doc: dict) -> None:
    """Append the checkpoint to "LedgerCheckpoint" (append-only, guarded)."""
    conn.execute(
        'INSERT INTO public."LedgerCheckpoint" ("root", "previousRoot", "sessionCount", '
        '"rowCount", "resultsRoot") VALUES (%s, %s, %s, %s, %s)',
        (doc["root"], doc["previousRoot"], doc["sessionCount"], doc["rows"],
         (doc.get("results") or {}).get("root")))


class CheckpointFileError(CheckpointError, UsageError):
    """A checkpoint file that cannot be used: unreadable, not JSON, or a field of the
    wrong type or form (named in the message). Exit 2: the operator gave a bad file."""

    exit_code = EXIT_USAGE


_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_BIGINT = 2 ** 63 - 1
#: a checkpoint file larger than this is refused unread
MAX_CHECKPOINT_BYTES = 1 << 30


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _int_field(where: str, value, low: int, high: int = _MAX_BIGINT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointFileError(f"{where}: an integer from {low} to {high} is expected, "
                                  f"found {_show(value)}")
    return value


def _hex_field(where: str, value) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise CheckpointFileError(f"{where}: 64 lowercase hex digits (a SHA-256) are "
                                  f"expected, found {_show(value)}")
    return value


def validate(doc, name: str = "checkpoint") -> dict:
    """``doc`` if it is a well-formed checkpoint whose root matches its heads; else
    CheckpointFileError naming the first field that is wrong."""
    if not isinstance(doc, dict):
        raise CheckpointFileError(f"{name}: a JSON object is expected, found "
                                  f"{type(doc).__name__}")
    from . import ledger_results
    formats = (CHECKPOINT_FORMAT, ledger_results.CHECKPOINT_FORMAT_V2)
    if doc.get("format") not in formats:
        raise CheckpointFileError(f"{name}: field format: not a {' or '.join(formats)} "
                                  f"document (found {_show(doc.get('format'))})")
    for key in ("takenAt", "rows", "sessionCount", "root", "previousRoot", "sessions"):
        if key not in doc:
            raise CheckpointFileError(f"{name}: field {key} is missing")
    taken = doc["takenAt"]
    try:
        if not isinstance(taken, str) or len(taken) > 64:
            raise ValueError
        dt.datetime.fromisoformat(taken)
    except ValueError:
        raise CheckpointFileError(f"{name}: field takenAt: an ISO 8601 timestamp is "
                                  f"expected, found {_show(taken)}") from None
    _int_field(f"{name}: field rows", doc["rows"], 0)
    _hex_field(f"{name}: field root", doc["root"])
    if doc["previousRoot"] is not None:
        _hex_field(f"{name}: field previousRoot", doc["previousRoot"])
    sessions = doc["sessions"]
    if not isinstance(sessions, list):
        raise CheckpointFileError(f"{name}: field sessions: a list is expected, found "
                                  f"{type(sessions).__name__}")
    seen = set()
    for i, e in enumerate(sessions):
        where = f"{name}: sessions[{i}]"
        if not isinstance(e, dict):
            raise CheckpointFileError(f"{where}: an object is expected, found "
                                      f"{type(e).__name__}")
        for key in ("sessionId", "chainSeq", "rowHash"):
            if key not in e:
                raise CheckpointFileError(f"{where}: field {key} is missing")
        sid = e["sessionId"]
        try:
            if not isinstance(sid, str) or str(uuid.UUID(sid)) != sid:
                raise ValueError
        except ValueError:
            raise CheckpointFileError(f"{where}.sessionId: a lowercase UUID is expected, "
                                      f"found {_show(sid)}") from None
        if sid in seen:
            raise CheckpointFileError(f"{where}.sessionId: {sid} appears twice")
        seen.add(sid)
        _int_field(f"{where}.chainSeq", e["chainSeq"], 1)
        _hex_field(f"{where}.rowHash", e["rowHash"])
    count = _int_field(f"{name}: field sessionCount", doc["sessionCount"], 0)
    if count != len(sessions):
        raise CheckpointFileError(f"{name}: field sessionCount is {count} but sessions "
                                  f"lists {len(sessions)}")
    root = root_of(sessions)
    if doc["format"] == ledger_results.CHECKPOINT_FORMAT_V2:
        root = ledger_results.combined_root(root, ledger_results.validate(doc, name))
    if root != doc["root"]:
        raise CheckpointFileError(f"{name}: field root: its root does not match its "
                                  "session heads and results (the file was edited)")
    if "legacy" in doc:
        validate_legacy(doc["legacy"], name)
    return doc


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def load(path) -> dict:
    """Read a checkpoint file and check every field and that its root matches its
    heads; CheckpointFileError (exit 2) naming what is wrong otherwise."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CHECKPOINT_BYTES + 1)
    except OSError as e:
        raise CheckpointFileError(f"{path}: cannot read the checkpoint: "
                                  f"{e.strerror or e}") from None
    if len(raw) > MAX_CHECKPOINT_BYTES:
        raise CheckpointFileError(f"{path}: larger than {MAX_CHECKPOINT_BYTES} bytes; "
                                  "not a checkpoint")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise CheckpointFileError(f"{path}: not UTF-8 text (byte {e.start}): not a "
                                  "checkpoint") from None
    except (ValueError, RecursionError) as e:
        raise CheckpointFileError(f"{path}: not JSON: {str(e)[:200]}") from None
    return validate(doc, str(path))


def check_checkpoint(conn, doc: dict, snapshot: str | None = None) -> list[str]:
    """Differences between a checkpoint taken earlier and the live ledger.

    Every head must still be there, at the same position with the same hash, on
    an intact chain (rows after it are allowed: the ledger only grows); every
    result a v2 document committed to must still be there unchanged
    (``harness.ledger_results``). ``snapshot``: as for ``recompute``.
    """
    from . import ledger_results
    rec = Recomputed()
    wanted = {e["sessionId"]: (int(e["chainSeq"]), e["rowHash"]) for e in doc["sessions"]}
    found: dict[str, tuple[int, str]] = {}
    with _Snapshot(conn, snapshot) as snap:
        _recompute(conn, rec, anchors=False, keep_heads=False, batch=5000,
                   snapshot=snap.exported)
        for sid, seq, h in conn.execute(
                'SELECT a."sessionId"::text, a."chainSeq", encode(a."rowHash", \'hex\') '
                'FROM public."LabAttempt" AS a '
                'JOIN unnest(%s::text[], %s::bigint[]) AS w (sid, seq) '
                'ON a."sessionId"::text = w.sid AND a."chainSeq" = w.seq',
                ([s for s in wanted], [v[0] for v in wanted.values()])):
            found[sid] = (seq, h)
        results_problems = ledger_results.check(conn, doc)
    broken = {b.session_id: b for b in rec.breaks}
    problems = []
    for sid, (seq, h) in sorted(wanted.items()):
        b = broken.get(sid)
        if b is not None and b.chain_seq <= seq:
            problems.append(f"session {sid}: chain broken at chainSeq {b.chain_seq} "
                            f"({b.kind}: {b.detail}), at or before the checkpoint's head "
                            f"{seq}")
        elif sid not in found:
            problems.append(f"session {sid}: the checkpoint's head at chainSeq {seq} is gone")
        elif found[sid][1] != h:
            problems.append(f"session {sid}: the row at chainSeq {seq} has another rowHash "
                            "than at the checkpoint (rewritten)")
    return problems + results_problems


# ---------------------------------------------------------------------------
# the legacy section: what was a pass without a PASS attempt, fixed off the database

LEGACY_FORMAT = "forgea.legacy-passes.v1"

_LEGACY_SQL = """
    SELECT s."id"::text FROM public."LabSession" AS s
    WHERE s."status" OPERATOR(pg_catalog.=) 'VERIFIED_PASS' AND NOT EXISTS (
        SELECT 1 FROM public."VerificationAttempt" AS a
        WHERE a."sessionId" OPERATOR(pg_catalog.=) s."id"
          AND a."result" OPERATOR(pg_catalog.=) 'PASS')
    ORDER BY 1"""

_JOBLESS_SQL = """
    SELECT a."id"::text FROM public."VerificationAttempt" AS a
    WHERE a."verificationJobId" IS NULL ORDER BY 1"""


def legacy_digest(session_ids: list[str], attempt_ids: list[str]) -> str:
    """SHA-256 of the format line, then "sessions" and the sorted session ids, then
    "attempts" and the sorted attempt ids, one a line."""
    text = (LEGACY_FORMAT + "\nsessions\n" + "".join(f"{s}\n" for s in sorted(session_ids))
            + "attempts\n" + "".join(f"{a}\n" for a in sorted(attempt_ids)))
    return hashlib.sha256(text.encode()).hexdigest()


def _have_lifecycle_tables(conn) -> bool:
    return conn.execute(
        "SELECT to_regclass('public.\"LabSession\"') IS NOT NULL "
        "AND to_regclass('public.\"VerificationAttempt\"') IS NOT NULL").fetchone()[0]


def legacy_passes(conn) -> list[str] | None:
    """The VERIFIED_PASS sessions without a PASS attempt (sorted ids); None when the
    tables do not exist yet. Plain reads, no function of the pack; comparisons name
    pg_catalog's operators, so no operator or cast planted for the pack's enum
    types changes what is read."""
    if not _have_lifecycle_tables(conn):
        return None
    return [r[0] for r in conn.execute(_LEGACY_SQL).fetchall()]


def jobless_attempts(conn) -> list[str] | None:
    """The VerificationAttempt rows without a job (the copies of VerificationLog V0009
    made), sorted ids; None when the tables do not exist yet."""
    if not _have_lifecycle_tables(conn):
        return None
    return [r[0] for r in conn.execute(_JOBLESS_SQL).fetchall()]


def legacy_section(conn, previous: dict | None = None) -> dict:
    """The checkpoint's ``legacy`` section: the sessions that are VERIFIED_PASS without
    a PASS attempt now (the passes the old lifecycle let in) and the attempts without a
    job (the legacy copies of VerificationLog), as ids and one digest.
    ``harness verify --checkpoint`` excuses such a pass, and counts a job-less PASS
    attempt as a pass, only when this section lists it. Both sets can only shrink:
    when ``previous`` has a legacy section, an id not in it is refused."""
    ids = legacy_passes(conn) or []
    attempts = jobless_attempts(conn) or []
    if previous is not None and "legacy" in previous:
        new = ([f"session {s}" for s in sorted(set(ids) - set(previous["legacy"]["sessions"]))]
               + [f"attempt {a}" for a in
                  sorted(set(attempts) - set(previous["legacy"]["attempts"]))])
        if new:
            raise CheckpointError("sessions became VERIFIED_PASS without a PASS attempt, or "
                                  "attempts without a job appeared, since the previous "
                                  "checkpoint; no checkpoint taken", new)
    return {"format": LEGACY_FORMAT, "count": len(ids), "attemptCount": len(attempts),
            "digest": legacy_digest(ids, attempts), "sessions": ids, "attempts": attempts}


def _uuid_list(where: str, ids) -> list[str]:
    if not isinstance(ids, list):
        raise CheckpointFileError(f"{where}: a list is expected, found {_show(ids)}")
    for i, v in enumerate(ids):
        try:
            if not isinstance(v, str) or str(uuid.UUID(v)) != v:
                raise ValueError
        except ValueError:
            raise CheckpointFileError(f"{where}[{i}]: a lowercase UUID is expected, found "
                                      f"{_show(v)}") from None
    if len(set(ids)) != len(ids):
        raise CheckpointFileError(f"{where}: an id appears twice")
    return ids


def validate_legacy(section, name: str = "checkpoint") -> dict:
    """The ``legacy`` section if well formed and its digest matches its ids; else
    CheckpointFileError naming the field."""
    where = f"{name}: field legacy"
    if not isinstance(section, dict):
        raise CheckpointFileError(f"{where}: an object is expected, found "
                                  f"{type(section).__name__}")
    if section.get("format") != LEGACY_FORMAT:
        raise CheckpointFileError(f"{where}.format: not {LEGACY_FORMAT} (found "
                                  f"{_show(section.get('format'))})")
    ids = _uuid_list(f"{where}.sessions", section.get("sessions"))
    attempts = _uuid_list(f"{where}.attempts", section.get("attempts"))
    for key, listed in (("count", ids), ("attemptCount", attempts)):
        _int_field(f"{where}.{key}", section.get(key), 0)
        if section[key] != len(listed):
            raise CheckpointFileError(f"{where}.{key} is {section[key]} but the list holds "
                                      f"{len(listed)}")
    _hex_field(f"{where}.digest", section.get("digest"))
    if legacy_digest(ids, attempts) != section["digest"]:
        raise CheckpointFileError(f"{where}.digest: does not match its ids (the file was "
                                  "edited)")
    return section


def compare(earlier: dict, later: dict) -> list[str]:
    """Does ``later`` extend ``earlier``? Offline: the two files only, no database.

    Every session head of ``earlier`` must be in ``later`` at the same or a later
    position, with the same hash where the position is the same. (A head that
    moved on is vouched for by the run that took ``later``: it refused to take a
    checkpoint unless the live chain extended the previous one.)
    """
    problems = []
    heads = {e["sessionId"]: (int(e["chainSeq"]), e["rowHash"]) for e in later["sessions"]}
    for e in earlier["sessions"]:
        sid, seq = e["sessionId"], int(e["chainSeq"])
        if sid not in heads:
            problems.append(f"session {sid}: in the earlier checkpoint, gone from the later")
        elif heads[sid][0] < seq:
            problems.append(f"session {sid}: head went back from chainSeq {seq} to "
                            f"{heads[sid][0]}")
        elif heads[sid][0] == seq and heads[sid][1] != e["rowHash"]:
            problems.append(f"session {sid}: head at chainSeq {seq} has another rowHash")
    if "legacy" in earlier and "legacy" in later:
        for key, what in (("sessions", "session"), ("attempts", "attempt")):
            grown = sorted(set(later["legacy"][key]) - set(earlier["legacy"][key]))
            problems += [f"{what} {i}: legacy in the later checkpoint, not in the earlier"
                         for i in grown]
    from . import ledger_results
    return problems + ledger_results.compare(earlier, later)


def describe(b: Break) -> str:
    return f"session {b.session_id} chainSeq {b.chain_seq} ({b.row_id}): {b.kind}: {b.detail}"
