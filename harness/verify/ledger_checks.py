"""The push ledger: its hash chain checked by the database and recomputed in
Python, and a checkpoint kept off the database."""

from __future__ import annotations

from .. import ledger
from .queries import exists as _exists
from .queries import rows as _rows


def lab_attempt_chain(c, ctx) -> None:
    """verify_lab_attempt_chain() (the database's own check of the ledger) returns no row."""
    conn = ctx.conn
    fn = conn.execute("SELECT to_regprocedure('public.verify_lab_attempt_chain(uuid)')"
                      ).fetchone()[0]
    if fn is None:
        if _exists(conn, "LabAttempt"):
            c.fail("verify_lab_attempt_chain(uuid)", "function missing")
        else:
            c.info('"LabAttempt"', "not applied yet")
        return
    rows = _rows(conn, "SELECT session_id, chain_seq, lab_attempt_id, problem, detail "
                       "FROM public.verify_lab_attempt_chain(NULL) "
                       "ORDER BY session_id, chain_seq")
    for problem in sorted({r[3] for r in rows}):
        sel = [r for r in rows if r[3] == problem]
        c.fail('"LabAttempt" hash chain', f"{problem} rows (session/seq/id: detail)",
               [f"{r[0]}/{r[1]}/{r[2]}: {r[4]}" for r in sel], len(sel))


def lab_attempt_chain_recomputed(c, ctx) -> None:
    """The chains recomputed in Python from the documented layout (harness.ledger):
    no function of the database is trusted, not even the hash function."""
    conn = ctx.conn
    if not _exists(conn, "LabAttempt"):
        c.info('"LabAttempt"', "not applied yet")
        return
    rec = ledger.recompute(conn, snapshot=ctx.ledger_snapshot)
    for kind in sorted({b.kind for b in rec.breaks}):
        sel = [b for b in rec.breaks if b.kind == kind]
        c.fail('"LabAttempt" hash chain (recomputed)',
               f"{kind}: first broken link per session (session/seq/id: detail)",
               [f"{b.session_id}/{b.chain_seq}/{b.row_id}: {b.detail}" for b in sel],
               len(sel))
    shared = f" by {rec.parts} processes" if rec.parts > 1 else ""
    c.info('"LabAttempt"', f"{rec.rows} rows of {rec.sessions} sessions recomputed in "
                           f"{rec.seconds:.2f} s{shared} ({rec.rows_per_s:.0f} rows/s)")


def checkpoint(c, ctx) -> None:
    """Every session head of a checkpoint kept off the database is still in place, and
    (format v2) every attempt, finished job and finished session it committed to."""
    conn, doc = ctx.conn, ctx.checkpoint
    problems = ledger.check_checkpoint(conn, doc, snapshot=ctx.ledger_snapshot)
    if problems:
        c.fail(f"checkpoint {doc['root'][:16]}",
               "the live ledger or a result no longer matches it",
               problems, len(problems))
    else:
        res = doc.get("results")
        covered = (f"; {len(res['attempts'])} attempts, {len(res['jobs'])} finished jobs, "
                   f"{len(res['sessions'])} finished sessions unchanged" if res
                   else "; results not covered (a v1 document)")
        c.info(f"checkpoint {doc['root'][:16]}",
               f"{doc['sessionCount']} session heads of {doc['takenAt']} still in place"
               + covered)
