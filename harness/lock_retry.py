"""Lock retries: take locks the way production teams do.

Every migration session runs with a short ``lock_timeout`` (default 100ms), the
way GitLab's ``with_lock_retries`` takes locks: a statement waits at most that
long for a lock, so the application queues behind the migration's lock request
at most that long. A step that fails only with ``lock_not_available`` (55P03) is
rolled back and retried (:meth:`Retrier.run`), up to ``lock_retries`` times
(default 150), sleeping an exponentially growing delay (0.1 s doubling, capped at
``retry_max_delay``, default 2 s) with jitter (half of it random) in between:
about four minutes of patience in all. The cap is short because a window in
the application's locks is short: behind a report that holds its transaction
2-4 s with 0.5-1 s between transactions, a 10 s cap left V0006 waiting 36 s in
one 100k run (11 retries); attempts at most 2 s apart find a gap sooner, and
each still holds the application up for at most lock_timeout.
From the first failure on, a second connection watches ``pg_blocking_pids()`` of
the migration session (:class:`BlockerWatch`), so each retry line and the final
report name the sessions in the way (pid, application, role, the locks they
hold; state, transaction age and query when the migration role may see them).
When the window never comes the run stops (exit 3, :class:`LockNotGranted`) at a
recorded version, saying so. ``CREATE/DROP INDEX CONCURRENTLY`` statements are
the exception: they wait for running transactions while holding only SHARE
UPDATE EXCLUSIVE, which no application statement queues behind, so they run with
``concurrent_lock_timeout`` (default 5min) instead of being rebuilt (and leaving
an INVALID index) every time a report is open.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from dataclasses import dataclass

import psycopg

from .dsn import DEFAULT_LOCK_TIMEOUT, session_options
from .errors import LockNotGranted, UsageError

#: lock_timeout of CREATE/DROP INDEX CONCURRENTLY and REINDEX CONCURRENTLY: they wait
#: for running transactions, but hold only SHARE UPDATE EXCLUSIVE, which no
#: application statement queues behind, so a short timeout would only throw away
#: a build (and leave an INVALID index) each time a report is open
DEFAULT_CONCURRENT_LOCK_TIMEOUT = "5min"
#: retries of a step that failed on lock_not_available (read at call time)
MAX_LOCK_RETRIES = 150
#: first backoff delay (doubling per retry, half of it random) and its cap, seconds
RETRY_BASE_DELAY = 0.1
RETRY_MAX_DELAY = 2.0


@dataclass(frozen=True)
class LockRetry:
    """How a step that hits ``lock_timeout`` is retried (see the module docstring).

    ``retries`` and ``base_delay`` default to :data:`MAX_LOCK_RETRIES` and
    :data:`RETRY_BASE_DELAY` as they are when the policy is built."""

    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    retries: int | None = None
    max_delay: float = RETRY_MAX_DELAY
    base_delay: float | None = None
    concurrent_lock_timeout: str = DEFAULT_CONCURRENT_LOCK_TIMEOUT

    def __post_init__(self):
        if self.retries is None:
            object.__setattr__(self, "retries", MAX_LOCK_RETRIES)
        if self.base_delay is None:
            object.__setattr__(self, "base_delay", RETRY_BASE_DELAY)
        if self.retries < 0:
            raise UsageError(f"--lock-retries must be 0 or more, got {self.retries}")
        if not self.max_delay > 0:
            raise UsageError(f"--lock-retry-max-delay must be positive, got {self.max_delay}")

    def delay(self, retry: int) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based): exponential,
        capped, half of it random ("equal jitter"), so that several waiters
        (or a waiter and a periodic blocker) do not stay in step."""
        d = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return d / 2 + random.uniform(0, d / 2)

    @classmethod
    def from_options(cls, lock_timeout, lock_retries, retry_max_delay,
                     concurrent_lock_timeout) -> "LockRetry":
        """The policy of the CLI options (None: the default); values are checked."""
        session_options(lock_timeout, "0")                   # validates the values
        session_options(concurrent_lock_timeout, "0")
        return cls(lock_timeout=str(lock_timeout).replace(" ", ""), retries=lock_retries,
                   max_delay=RETRY_MAX_DELAY if retry_max_delay is None
                   else float(retry_max_delay),
                   concurrent_lock_timeout=str(concurrent_lock_timeout).replace(" ", ""))


class BlockerWatch:
    """Who keeps the migration session waiting for a lock.

    A second connection (``application_name = 'harness-lock-watch'``) polls
    ``pg_blocking_pids()`` of the migration backend every 10 ms while an attempt
    runs, and keeps what it saw of each blocker: the sessions holding (or queued
    ahead for) a conflicting lock. Opened at the first lock timeout of a run."""

    QUERY = """
        SELECT a.pid, a.application_name, a.usename, a.state,
               extract(epoch FROM clock_timestamp() - a.xact_start)::float8,
               left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), 160),
               (SELECT string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', ')
                FROM pg_catalog.pg_locks AS l
                WHERE l.pid = a.pid AND l.granted AND l.relation IS NOT NULL
                  AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                    WHERE datname = current_database()))
        FROM pg_catalog.pg_stat_activity AS a
        WHERE a.pid = ANY (pg_catalog.pg_blocking_pids(%s))"""

    def __init__(self, dsn: str, pid: int):
        self.pid = pid
        self.seen: dict[int, dict] = {}      # every blocker of this run, last sighting
        self.attempt: dict[int, dict] = {}   # blockers of the current attempt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.conn = psycopg.connect(dsn, autocommit=True,
                                    application_name="harness-lock-watch",
                                    options="-c lock_timeout=1s -c statement_timeout=5s")

    @contextlib.contextmanager
    def watching(self):
        self.attempt = {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="harness-lock-watch",
                                        daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(timeout=5)

    def _run(self):
        while not self._stop.is_set():
            try:
                for pid, app, user, state, age, query, locks in self.conn.execute(
                        self.QUERY, (self.pid,)).fetchall():
                    info = {"pid": pid, "application_name": app, "user": user,
                            "state": state, "xact_age_s": age, "query": query,
                            "locks": locks}
                    self.attempt[pid] = info
                    self.seen[pid] = info
            except psycopg.Error:
                return
            self._stop.wait(0.01)

    @staticmethod
    def describe(info: dict) -> str:
        """One line per blocker. A migration role without ``pg_read_all_stats``
        sees no state, transaction start or query of other roles' sessions (the
        locks it does see)."""
        state = info.get("state") or "state hidden (grant pg_read_all_stats to see it)"
        age = (f", transaction open {info['xact_age_s']:.1f}s"
               if info.get("xact_age_s") is not None else "")
        locks = f", holds {info['locks']}" if info.get("locks") else ""
        q = info.get("query")
        query = f"; last query: {q}" if q and q != "<insufficient privilege>" else ""
        return (f"pid {info['pid']} (application_name {info['application_name']!r}, "
                f"user {info['user']!r}, {state}{age}{locks}){query}")

    def close(self):
        self._stop.set()
        try:
            self.conn.close()
        except Exception:
            pass


class Retrier:
    """Runs the steps of one migration session under a :class:`LockRetry` policy.

    ``session`` provides ``conn``, ``dsn``, ``reset_tx()``, ``say()``,
    ``event()`` and ``bookkeeping.step`` (reset before each attempt)."""

    def __init__(self, session, policy: LockRetry):
        self.session = session
        self.policy = policy
        self.watch: BlockerWatch | None = None
        self.watch_failed = False

    def run(self, label: str, fn, on_error):
        """Run ``fn``; on lock_not_available (55P03) roll back and retry it with
        the backoff of :class:`LockRetry`, naming the blockers; when the retries
        run out raise what ``on_error(exc, exhausted=True)`` returns. Any other
        psycopg error goes to ``on_error(exc, exhausted=False)``."""
        retry = self.policy
        sess = self.session
        attempt = 0
        t0 = time.monotonic()
        while True:
            attempt += 1
            sess.bookkeeping.step = None
            try:
                return self._attempt(fn)
            except psycopg.Error as e:
                sess.reset_tx()
                lost = sess.conn.closed or sess.conn.broken
                if lost or e.sqlstate != "55P03":
                    raise on_error(e, exhausted=False) from e
                self._start_watch()
                if attempt > retry.retries:
                    raise on_error(e, exhausted=True, attempts=attempt,
                                   waited=time.monotonic() - t0) from e
                delay = retry.delay(attempt)
                who = self.blockers(current=True)
                sess.say(f"{label}: lock not available within lock_timeout "
                         f"{retry.lock_timeout} (55P03: "
                         f"{(e.diag.message_primary or '').strip()})"
                         + (f"; blocked by {'; '.join(who)}" if who else "")
                         + f"; retry {attempt}/{retry.retries} in {delay:.2f}s")
                sess.event("retry", label)
                time.sleep(delay)

    def not_granted(self, head: str, e: psycopg.Error, attempts: int, waited: float,
                    *, file: str | None, after: list[str]) -> LockNotGranted:
        """The exit-3 error of a step whose locks never came: the blockers seen,
        ``after`` (what is committed), and the way out."""
        who = self.blockers(current=False)
        r = self.policy
        return LockNotGranted(
            f"{head}: the locks it needs were not granted in {attempts} attempt(s) over "
            f"{waited:.1f}s (lock_timeout {r.lock_timeout} each; every attempt was "
            f"rolled back, so the application waited at most that long per attempt)",
            sqlstate=e.sqlstate, file=file,
            details=(["sessions in the way: " + w for w in who] if who else
                     ["no blocker was caught in the act (it released its lock between "
                      "attempts, or the lock watch could not connect)"])
            + after
            + ["when they are gone, run the same command again; or end them: "
               "SELECT pg_terminate_backend(PID);  --lock-retries and "
               "--lock-retry-max-delay wait longer, --lock-timeout makes each attempt "
               "(and the application's wait behind it) longer"])

    def _start_watch(self) -> None:
        if self.watch is None and not self.watch_failed:
            try:
                self.watch = BlockerWatch(self.session.dsn,
                                          self.session.conn.info.backend_pid)
            except psycopg.Error:
                self.watch_failed = True    # no second connection: retry without names

    def _attempt(self, fn):
        if self.watch is None:
            return fn()
        with self.watch.watching():
            return fn()

    def blockers(self, *, current: bool) -> list[str]:
        if self.watch is None:
            return []
        seen = self.watch.attempt if current else self.watch.seen
        return [BlockerWatch.describe(i) for i in seen.values()]

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
