"""What ``inferd serve`` prints on its terminal, written by a thread of its own.

The gateway said its events (``inferd: api 'x' is live``, replicas that exited, warnings, and
with ``--access-log`` a line per request) with blocking writes from its event loop: when the
terminal did not read them (``inferd serve . | less`` left on a page, a terminal stopped with
Ctrl-S, a log collector that stalls), the first write past the pipe's 64 KiB stopped the event
loop, and every client of every API waited for good. Lines now wait in a bounded buffer for a
writer thread; past it they are dropped, and how many is said once the terminal reads again.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from typing import TextIO

LIMIT = 1 << 20  # characters of lines waiting for the terminal


class Console:
    """Lines for ``stream``, never blocking whoever says them (``say``; ``write`` for streams)."""

    def __init__(self, stream: TextIO | None = None, limit: int = LIMIT) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.limit = limit
        self._lines: deque[str] = deque()
        self._size = 0
        self._dropped = 0
        self._writing = False
        self._ready = threading.Condition()
        threading.Thread(target=self._run, name="inferd-console", daemon=True).start()

    def say(self, text: str) -> None:
        """Print ``text`` as a line soon; dropped (and counted) while the buffer is full."""
        with self._ready:
            if self._size + len(text) > self.limit:
                self._dropped += 1
                return
            self._lines.append(text)
            self._size += len(text)
            self._ready.notify()

    def write(self, text: str) -> None:
        """As a stream: ``text`` holds whole lines (the access log writes them so)."""
        self.say(text.removesuffix("\n"))

    def flush(self) -> None:
        return None

    def drain(self, timeout: float = 2.0) -> None:
        """Wait up to ``timeout`` s for the lines said so far to be written (before exiting)."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while (self._lines or self._writing) and time.monotonic() < deadline:
                self._ready.wait(0.05)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._lines:
                    self._ready.wait()
                text = self._lines.popleft()
                self._size -= len(text)
                dropped, self._dropped = self._dropped, 0
                self._writing = True
            try:
                if dropped:
                    self.stream.write(
                        f"inferd: {dropped} lines were not printed: the terminal did not read them\n"
                    )
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a terminal gone (a closed pipe): the lines have nowhere to go
            finally:
                with self._ready:
                    self._writing = False
                    self._ready.notify_all()


class ConsoleHandler(logging.Handler):
    """Log records (the gateway's warnings) said on a ``Console``."""

    def __init__(self, console: Console, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.say(self.format(record))
        except Exception:
            self.handleError(record)
