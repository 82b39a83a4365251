"""The migration lock: one harness run per database at a time.

yoyo's lock row (``yoyo_lock``) survives a crashed run. The harness instead holds
a session-level advisory lock (``pg_try_advisory_lock`` on :data:`LOCK_KEY`) on
the migration connection for the whole run: it vanishes with the session when
the process dies (or its backend is terminated). A second run waits up to
``lock_wait`` seconds, then stops (exit 3) naming the holder's pid.
"""

from __future__ import annotations

import time

import psycopg

from .errors import LockHeld

#: advisory lock key of the harness (per database): 'FRG1'
LOCK_KEY = 0x46524731


class MigrationLock:
    """The advisory lock, taken and released on the migration connection ``conn``."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.held = False

    def acquire(self, wait: float, say) -> None:
        """Take the lock, waiting up to ``wait`` seconds (``say`` announces the
        wait once); then refuse with :class:`LockHeld` naming the holder."""
        deadline = time.monotonic() + max(0.0, float(wait))
        announced = False
        while True:
            got = self.conn.execute("SELECT pg_try_advisory_lock(%s::bigint)",
                                    (LOCK_KEY,)).fetchone()[0]
            if got:
                self.held = True
                return
            holder = self.holder()
            if time.monotonic() >= deadline:
                who = (f"pid {holder['pid']} (application_name {holder['application_name']!r}, "
                       f"user {holder['usename']!r}, state {holder['state']!r})"
                       if holder else "another session")
                raise LockHeld(
                    f"another harness run holds the migration lock on this database: "
                    f"{who}; waited {wait:g}s",
                    details=["if that process is gone but its backend lingers, a DBA can "
                             f"end it: SELECT pg_terminate_backend({holder['pid'] if holder else 'PID'});"])
            if not announced:
                say(f"waiting up to {wait:g}s for the migration lock held by pid "
                    f"{holder['pid'] if holder else '?'} ...")
                announced = True
            time.sleep(0.2)

    def holder(self) -> dict | None:
        """The session holding the lock on this database (pid, application_name,
        usename, state, backend_start), or None."""
        row = self.conn.execute("""
            SELECT l.pid, a.application_name, a.usename, a.state, a.backend_start
            FROM pg_catalog.pg_locks l
            LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0
              AND l.objid = %s AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                WHERE datname = current_database())
            LIMIT 1""", (LOCK_KEY,)).fetchone()
        if not row:
            return None
        return dict(zip(("pid", "application_name", "usename", "state", "backend_start"), row))

    def release(self) -> None:
        """Give the lock back (a no-op when not held or the connection is gone)."""
        try:
            if self.held and not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (LOCK_KEY,))
        except psycopg.Error:
            pass
        self.held = False
