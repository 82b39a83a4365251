"""worker_attestations: every pass carries a valid signature by a registered worker key.

A pass is a PASSED job, a PASS attempt or a VERIFIED_PASS session. With
``--worker-keys`` (ctx.worker_keys), each must be backed by a job and its
attempt that agree (PASSED / PASS, same session and commit) and whose job
carries an Ed25519 signature, by a key of the file, over the statement
harness.attest.statement recomputed from the rows; anything else fails.
Legacy passes (no job at all: passed before the pack; completed before the
lifecycle guards were applied) are info: nothing can attest them.
Without keys the passes are counted as "unattested" (info).
"""

from __future__ import annotations

from .. import attest
from .queries import rule as _rule
from .report import MAX_ROWS
from .rows import _lifecycle_applied_at

#: PASSED jobs and jobs whose attempt says PASS, with what the statement needs
_PAIRS = """
    SELECT j."id", j."sessionId", j."commitSha", j."labVersionId", j."status"::text,
           j."completedAt", j."attestationSignature", j."attestationKeyId",
           a."id", a."sessionId", a."commitSha", a."result"::text,
           (a."logs" - 'job')::text
    FROM public."VerificationJob" AS j
    LEFT JOIN public."VerificationAttempt" AS a ON a."verificationJobId" = j."id"
    WHERE j."status" = 'PASSED' OR a."result" = 'PASS'
    ORDER BY j."id"
"""

#: PASS attempts without a job row: legacy copies, or not
_JOBLESS = """
    SELECT a."id"::text FROM public."VerificationAttempt" AS a
    WHERE a."result" = 'PASS' AND NOT EXISTS (
        SELECT 1 FROM public."VerificationJob" AS j WHERE j."id" = a."verificationJobId")
      AND {cond} ORDER BY 1"""
_LEGACY_ATTEMPT = """(a."verificationJobId" IS NULL
    AND (a."createdAt" <= timezone('UTC', %(cutoff)s::timestamptz)) IS TRUE)"""

#: VERIFIED_PASS sessions without any job: legacy, or not
_JOBLESS_SESSIONS = """
    SELECT s."id"::text FROM public."LabSession" AS s
    WHERE s."status" = 'VERIFIED_PASS' AND NOT EXISTS (
        SELECT 1 FROM public."VerificationJob" AS j WHERE j."sessionId" = s."id")
      AND {cond} ORDER BY 1"""
_LEGACY_SESSION = """(s."completedAt" <= timezone('UTC', %(cutoff)s::timestamptz)) IS TRUE"""

#: VERIFIED_PASS sessions that have jobs (each needs an attested pass)
_SESSIONS_WITH_JOBS = """
    SELECT s."id" FROM public."LabSession" AS s
    WHERE s."status" = 'VERIFIED_PASS' AND EXISTS (
        SELECT 1 FROM public."VerificationJob" AS j WHERE j."sessionId" = s."id")
    ORDER BY 1"""

_COUNTS = """
    SELECT count(*) FILTER (WHERE j."status" = 'PASSED'),
           count(*) FILTER (WHERE j."status" = 'PASSED'
                            AND j."attestationSignature" IS NOT NULL),
           (SELECT count(*) FROM public."LabSession" AS s WHERE s."status" = 'VERIFIED_PASS')
    FROM public."VerificationJob" AS j"""


class _Findings:
    """Rows per message, the first MAX_ROWS kept, all counted."""

    def __init__(self):
        self.by_msg: dict[str, list] = {}
        self.count: dict[str, int] = {}

    def add(self, msg: str, row: str):
        self.count[msg] = self.count.get(msg, 0) + 1
        kept = self.by_msg.setdefault(msg, [])
        if len(kept) < MAX_ROWS:
            kept.append(row)


def _check_pair(r, keys) -> str | None:
    """Why a (job, attempt) pass is not proven, or None when its attestation holds."""
    jid, jsess, jsha, jver, jstatus, jdone, sig, kid, _aid, asess, asha, aresult, alogs = r
    if jstatus != "PASSED" or aresult != "PASS":
        return f"job {jstatus} but attempt {aresult}: they disagree"
    if (asess, asha) != (jsess, jsha):
        return "attempt's session or commit differs from its job's"
    if sig is None:
        return "no attestation (completed without a worker signature)"
    if kid not in keys:
        return f"signed by key {kid!r}, which --worker-keys does not register"
    try:
        message = attest.statement(
            {"id": jid, "sessionId": jsess, "commitSha": jsha, "labVersionId": jver},
            result="PASSED", logs_sha256=attest.logs_digest(attest.parse_logs(alogs)),
            completed_at=jdone, key_id=kid)
    except (ValueError, RecursionError) as e:
        return f"statement cannot be rebuilt: {e}"
    if not attest.verify(keys[kid], bytes(sig), message):
        return "signature does not match the statement recomputed from the rows"
    return None


def _signed_pairs(c, conn, keys) -> set:
    """Check every job-backed pass; the sessions with at least one attested pass."""
    bad, proven = _Findings(), set()
    with conn.cursor(name="harness_verify_attestations") as cur:
        cur.itersize = 2000
        cur.execute(_PAIRS)
        for r in cur:
            if r[8] is None:
                bad.add("PASSED job without its PASS attempt", str(r[0]))
                continue
            why = _check_pair(r, keys)
            if why is None:
                proven.add(r[1])
            else:
                bad.add(f"pass not attested: {why}", f"job {r[0]}")
    for msg, kept in bad.by_msg.items():
        c.fail('"VerificationJob"', msg, kept, bad.count[msg])
    return proven


def worker_attestations(c, ctx) -> None:
    """Every pass carries a valid worker attestation (with --worker-keys); else info."""
    conn, have = ctx.conn, ctx.have
    if not (have["VerificationJob"] and have["VerificationAttempt"] and have["LabSession"]):
        c.info('"VerificationJob"', "not applied yet")
        return
    cols = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = "
        "'public.\"VerificationJob\"'::regclass AND attnum > 0 AND NOT attisdropped")}
    if "attestationSignature" not in cols:
        c.info('"VerificationJob"', "attestation columns not applied yet")
        return
    params = {"cutoff": _lifecycle_applied_at(conn, ctx.state)}
    keys = ctx.worker_keys
    _rule(c, conn, '"VerificationAttempt"', "PASS attempts without their job (after the "
          "pack, or whose job is gone)",
          _JOBLESS.format(cond=f"NOT {_LEGACY_ATTEMPT}"), params)
    _rule(c, conn, '"LabSession"', "VERIFIED_PASS sessions without any job, completed "
          "after the pack", _JOBLESS_SESSIONS.format(cond=f"NOT {_LEGACY_SESSION}"), params)
    _rule(c, conn, '"VerificationAttempt"', "legacy PASS attempts (copied from "
          "VerificationLog, no job): nothing can attest them",
          _JOBLESS.format(cond=_LEGACY_ATTEMPT), params, info=True)
    _rule(c, conn, '"LabSession"', "legacy VERIFIED_PASS sessions (passed before the "
          "pack, no job): nothing can attest them; pin them with a checkpoint",
          _JOBLESS_SESSIONS.format(cond=_LEGACY_SESSION), params, info=True)
    if keys is None:
        n_jobs, n_signed, n_sessions = conn.execute(_COUNTS).fetchone()
        c.info('"VerificationJob"',
               f"unattested: {n_jobs} PASSED jobs and {n_sessions} VERIFIED_PASS sessions "
               f"not checked against worker keys ({n_signed} of the jobs carry a "
               "signature); to require attestations run harness verify --worker-keys "
               "FILE (docs/security.md, \"Worker attestations\")")
        return
    proven = _signed_pairs(c, conn, keys)
    unproven = _Findings()
    with conn.cursor(name="harness_verify_attested_sessions") as cur:
        cur.itersize = 5000
        cur.execute(_SESSIONS_WITH_JOBS)
        for (sid,) in cur:
            if sid not in proven:
                unproven.add("VERIFIED_PASS session without an attested pass", str(sid))
    for msg, kept in unproven.by_msg.items():
        c.fail('"LabSession"', msg, kept, unproven.count[msg])
    if c.status != "fail":
        c.info('"VerificationJob"', f"the passes of {len(proven)} sessions are attested by "
               f"{len(keys)} registered worker keys")
