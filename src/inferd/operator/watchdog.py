"""A hung operator is restarted like a dead one: its event loop beats, its supervisor listens.

The supervisor brings back an operator that dies; one that hangs (a deadlock, a handler of the
event loop that never returns, a process stopped with SIGSTOP) kept its pid and answered nothing
for good: no request, no ``inferd get``, and nothing restarted it. So the operator's event loop
touches ``operator.beat`` every second (``keep_beating``: a task of that loop, so the beats stop
when the loop does), and its supervisor watches the file (``Watchdog``). Once the beat has not
moved for ``INFERD_HANG_TIMEOUT`` seconds (default 60; ``0`` turns the watch off), counted on
the supervisor's monotonic clock (so a machine's suspend or a clock change is no hang), the
supervisor sends SIGABRT (the operator's ``faulthandler`` writes every thread's stack into
``operator.log``), then SIGKILL, and starts it again as it does a crashed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

BEAT_FILE = "operator.beat"
BEAT_PERIOD = 1.0
HANG_ENV = "INFERD_HANG_TIMEOUT"
DEFAULT_HANG = 60.0
ABORT_GRACE = 5.0  # from SIGABRT (a stack dump) to SIGKILL

log = logging.getLogger("inferd.operator")


def hang_timeout(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds without a beat that make the operator hung (0: never); a bad value is the default."""
    text = environ.get(HANG_ENV, "").strip()
    if not text:
        return DEFAULT_HANG
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        log.warning("%s=%r is not a number of seconds from 0 up: using %g", HANG_ENV, text, DEFAULT_HANG)
        return DEFAULT_HANG
    return value


async def keep_beating(home: Path) -> None:
    """Touch ``operator.beat`` (which names this process) every second, while this loop runs."""
    beat = home / BEAT_FILE
    try:  # the owner's only, whatever the umask: another user could keep a hung operator's beat
        descriptor = os.open(beat, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            os.fchmod(descriptor, 0o600)  # a beat an older inferd left
            out.write(str(os.getpid()))
    except OSError as exc:
        log.warning("cannot write %s (%s): a hang of this operator will not be noticed", beat, exc)
        return
    while True:
        with contextlib.suppress(OSError):  # a full disk still takes a time stamp
            os.utime(beat)
        await asyncio.sleep(BEAT_PERIOD)


def stop_beating(home: Path) -> None:
    """The operator stopped as asked: its beat goes with it."""
    (home / BEAT_FILE).unlink(missing_ok=True)


class Watchdog:
    """Watches one operator process's beat from a thread of its supervisor."""

    def __init__(self, home: Path, pid: int, timeout: float, say: Callable[[str], None]) -> None:
        self.beat = home / BEAT_FILE
        self.pid = pid
        self.timeout = timeout
        self.say = say
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="inferd-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        if self.timeout > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()

    def _seen(self) -> float | None:
        """The beat's time stamp when it is this operator's (None before its loop first beat)."""
        try:
            if self.beat.read_text().strip() != str(self.pid):
                return None
            return self.beat.stat().st_mtime
        except (OSError, ValueError):
            return None

    def _watch(self) -> None:
        last, since = None, time.monotonic()
        while not self.done.wait(BEAT_PERIOD):
            seen = self._seen()
            now = time.monotonic()
            if seen is None or seen != last:
                last, since = seen, now
                continue
            if now - since >= self.timeout:
                self._stop(now - since)
                return

    def _stop(self, quiet: float) -> None:
        self.say(
            f"the operator (pid {self.pid}) has not run for {quiet:.0f}s ({HANG_ENV}={self.timeout:g}): "
            "stopping it (its threads' stacks follow) to start it again"
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGABRT)
            os.kill(self.pid, signal.SIGCONT)  # a stopped one (SIGSTOP) takes it now
            if not self.done.wait(ABORT_GRACE):
                os.kill(self.pid, signal.SIGKILL)
