"""One terminal line per setup phase of the suite, as it starts and when it ends.

The suite spends its first seconds starting a PostgreSQL server per worker and
building template databases (and, for tests/app, ``npm ci`` and the Prisma
clients); without a word this looks like a hang. :func:`phase` prints
``[gw0] setup 2: template tmpl_baseline (production adopted, then V0002) ...``
when a phase starts and ``... done in 3.1 s`` when it ends, straight to the
terminal: pytest's output capture is suspended for the line (in an xdist worker
the line goes to the worker's stderr, which is the terminal's).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time

_config = None
_counter = itertools.count(1)


def bind(config) -> None:
    """Remember pytest's config (for its capture manager); called by conftest."""
    global _config
    _config = config


def say(line: str) -> None:
    """``line`` on the terminal now, whatever pytest is capturing."""
    capman = _config.pluginmanager.getplugin("capturemanager") if _config else None
    if _config is not None and _config.getoption("verbose", 0) <= -2:   # -qq: silent
        return
    ctx = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
    with ctx:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def phase(what: str):
    """Announce a setup phase, then how long it took (or that it failed)."""
    who = os.environ.get("PYTEST_XDIST_WORKER")
    head = f"{f'[{who}] ' if who else ''}setup {next(_counter)}: {what}"
    say(f"\n{head} ...")
    t0 = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"{head}: FAILED after {time.monotonic() - t0:.1f} s")
        raise
    say(f"{head}: done in {time.monotonic() - t0:.1f} s")
