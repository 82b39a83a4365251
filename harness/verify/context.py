"""What the checks share: the connection, the recorded migrations, which tables exist.

Built once per run inside the read-only transaction; the table facts are read
on first use, so a check that reads them and errors fails alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..bookkeeping import HARNESS_TABLE, bookkeeping_schema
from .queries import exists, rows

#: the tables whose presence the row checks depend on (absent: not applied yet)
ROW_TABLES = ("LabSession", "LabVersion", "GitHubRepoMapping", "VerificationJob",
              "VerificationAttempt", "LabAttempt", "VerificationLog", "GitHubPushDelivery")


def applied_files(conn, files) -> tuple[dict, list]:
    """Recorded migrations by id (with ``state``: 'applied', or 'applying' /
    'rolling_back' for an interrupted no-transaction file), and the applied files."""
    state = {}
    schema = bookkeeping_schema(conn)
    rel = f'{schema}."{HARNESS_TABLE}"'
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (rel,)).fetchone()[0] \
            if schema else False:
        has_state = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
            "to_regclass(%s) AND attname = 'state' AND NOT attisdropped)", (rel,)).fetchone()[0]
        for mid, cs, rcs, adopted, at, st in rows(
                conn, "SELECT migration_id, checksum, rollback_checksum, adopted, applied_at, "
                      + ("state " if has_state else "'applied' ") + f"FROM {rel}"):
            state[mid] = {"checksum": cs, "rollback_checksum": rcs, "adopted": adopted,
                          "applied_at": at, "state": st}
    applied = [f for f in files if f.id in state and state[f.id]["state"] == "applied"]
    return state, applied


@dataclass
class Context:
    """Everything a check reads besides the database itself."""

    conn: object
    files: list                      # the chain on disk (harness.chain.MigrationFile)
    chain_problems: list             # what harness.chain.scan found wrong with it
    state: dict                      # recorded migrations by id (applied_files)
    applied: list                    # the files recorded as applied
    require_complete: bool = True
    checkpoint: dict | None = None
    reference: dict | None = None
    #: key id -> Ed25519 public key (harness.attest.load_worker_keys), or None
    worker_keys: dict | None = None
    #: why the bookkeeping could not be read (the checks built on it do not run)
    state_error: str | None = None
    #: the transaction's snapshot, exported for harness.ledger_parts, or None
    ledger_snapshot: str | None = None

    @cached_property
    def have(self) -> dict[str, bool]:
        """Which of ROW_TABLES exist."""
        return {t: exists(self.conn, t) for t in ROW_TABLES}

    @cached_property
    def lab_session_columns(self) -> set[str]:
        """The columns of LabSession (empty when it does not exist)."""
        if not self.have["LabSession"]:
            return set()
        return {r[0] for r in rows(self.conn, """
            SELECT a.attname FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = 'public."LabSession"'::regclass AND a.attnum > 0
              AND NOT a.attisdropped""")}

    @cached_property
    def owner(self) -> str | None:
        """The owner of the tables (LabSession's), which owns every object of the pack."""
        row = self.conn.execute("""SELECT pg_catalog.pg_get_userbyid(c.relowner)
                          FROM pg_catalog.pg_class c WHERE c.oid = to_regclass('public."LabSession"')
                       """).fetchone()
        return row[0] if row else None
