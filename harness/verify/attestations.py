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
from .report import MAX_ROWS
from .rows import _lifecycle_applied_at

_PAIRS = """
    SELECT j."id", j."sessionId", j."commitSha", j."labVersionId", j."status"::text,
           j."completedAt", j."attestationSignature", j."attestationKeyId",
           a."id", a."sessionId", a."commitSha", a."result"::text,
           (a."logs" - 'job')::text, a."verificationJobId",
           (a."createdAt" <= timezone('UTC', %(cutoff)s::timestamptz)) IS TRUE
    FROM public."VerificationJob" AS j
    FULL JOIN public."VerificationAttempt" AS a ON a."verificationJobId" = j."id"
    WHERE j."status" = 'PASSED' OR a."result" = 'PASS'
    ORDER BY coalesce(j."id", a."id")
"""

_SESSIONS = """
    SELECT s."id",
           EXISTS (SELECT 1 FROM public."VerificationJob" AS j WHERE j."sessionId" = s."id"),
           (s."completedAt" <= timezone('UTC', %(cutoff)s::timestamptz)) IS TRUE
    FROM public."LabSession" AS s
    WHERE s."status" = 'VERIFIED_PASS'
    ORDER BY s."id"
"""


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
    (jid, jsess, jsha, jver, jstatus, jdone, sig, kid,
     aid, asess, asha, aresult, alogs, ajob, _old) = r
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
    except ValueError as e:
        return f"statement cannot be rebuilt: {e}"
    if not attest.verify(keys[kid], bytes(sig), message):
        return "signature does not match the statement recomputed from the rows"
    return None


def worker_attestations(c, ctx) -> None:
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
    bad, legacy = _Findings(), _Findings()
    proven: set = set()
    n_pass = n_signed = 0
    with conn.cursor(name="harness_verify_attestations") as cur:
        cur.itersize = 2000
        cur.execute(_PAIRS, params)
        for r in cur:
            n_pass += 1
            jid, aid, ajob, old = r[0], r[8], r[13], r[14]
            n_signed += r[6] is not None
            if jid is None:
                if ajob is None and old:
                    legacy.add("legacy PASS attempts (copied from VerificationLog, no job): "
                               "nothing can attest them", str(aid))
                elif ajob is None:
                    bad.add("PASS attempt without a job, created after the pack", str(aid))
                else:
                    bad.add("PASS attempt whose job is missing", str(aid))
                continue
            if aid is None:
                bad.add("PASSED job without its PASS attempt", str(jid))
                continue
            if keys is None:
                continue
            why = _check_pair(r, keys)
            if why is None:
                proven.add(r[1])
            else:
                bad.add(f"pass not attested: {why}", f"job {jid}")
    sessions = conn.execute(_SESSIONS, params).fetchall()
    for sid, has_job, old in sessions:
        if not has_job:
            if old:
                legacy.add("legacy VERIFIED_PASS sessions (passed before the pack, no job): "
                           "nothing can attest them; pin them with a checkpoint", str(sid))
            else:
                bad.add("VERIFIED_PASS session without any job, completed after the pack",
                        str(sid))
        elif keys is not None and sid not in proven:
            bad.add("VERIFIED_PASS session without an attested pass", str(sid))
    if keys is None:
        c.info('"VerificationJob"',
               f"unattested: {n_pass} job/attempt passes and {len(sessions)} VERIFIED_PASS "
               f"sessions not checked against worker keys ({n_signed} carry a signature); "
               "to require attestations run harness verify --worker-keys FILE "
               "(docs/security.md, \"Worker attestations\")")
    for msg, kept in bad.by_msg.items():
        c.fail('"VerificationJob"', msg, kept, bad.count[msg])
    for msg, kept in legacy.by_msg.items():
        c.info('"LabSession"', msg, kept, legacy.count[msg])
    if keys is not None and not bad.by_msg:
        c.info('"VerificationJob"', f"{len(proven)} sessions' passes attested by "
               f"{len(keys)} registered worker keys")
