"""A replica's log records each on a line of their own.

A replica's stdout and stderr are one pipe that the engine splits into lines
(``engine/output.py``). Text a handler leaves without a newline (``print(..., end="")``, a
progress bar) had the replica's next log record glued to it, so ``inferd logs`` showed
``progress 50%2026-11-30 17:22:38,534 api [api-1] ERROR ...`` and ``--since`` could not read the
record's time. The two streams note whether the last text written ended a line, and a record
that would continue one starts a new line.

A write that fails is dropped, never the request's failure: under ``inferd serve`` a replica
writes on the terminal or pipe ``inferd serve`` was given, and once its reader went away
(``inferd serve | head``, a log collector restarted) or its disk filled, every ``print`` in a
handler raised ``BrokenPipeError`` or ``OSError`` and each such request was a 500.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterable
from typing import Any, TextIO


class LineEnds:
    """Whether the last text written to stdout or stderr (one pipe) left a line unfinished."""

    def __init__(self) -> None:
        self.open = False


class WatchedStream:
    """``stream`` as it is, noting in ``ends`` whether what was written last ended a line."""

    def __init__(self, stream: TextIO, ends: LineEnds) -> None:
        self._stream = stream
        self._ends = ends

    def write(self, text: str) -> int:
        try:
            written = self._stream.write(text)
        except OSError as exc:
            self._lost(exc)
            return len(text)
        if text:
            self._ends.open = text[-1] != "\n"
        return written

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        """The text could not be written: it is dropped. A reader that hung up never comes
        back, so the stream's descriptor then goes to the null device: what waits in its buffer,
        and every later write (the runtime's own on the descriptor included), costs nothing."""
        if isinstance(exc, BrokenPipeError):
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self._stream.fileno())
                os.close(null)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to ``stream``, first ending a line that the handler's output left open
    (after ``stdout``'s unfinished text, which may wait in its buffer)."""

    def __init__(self, stream: Any, ends: LineEnds, stdout: Any) -> None:
        super().__init__(stream)
        self.ends = ends
        self.stdout = stdout

    def emit(self, record: logging.LogRecord) -> None:
        if self.ends.open:
            with contextlib.suppress(Exception):  # a closed stdout: the record is still written
                self.stdout.flush()
                self.stream.write("\n")
        super().emit(record)


def own_encoding(stream: TextIO) -> TextIO:
    """``stream``'s descriptor as a line-buffered text stream in UTF-8 (the terminal's encoding on
    a terminal) that escapes what it cannot encode.

    The engine reads a replica's pipe as UTF-8 whatever the locale: under ``LANG=C`` with
    ``PYTHONCOERCECLOCALE=0``, or a Latin-1 locale, a handler's ``print("✓")`` raised
    ``UnicodeEncodeError``, which failed its ``init`` or its request. A new stream, as
    ``reconfigure`` of a zygote's stream (opened on a file, now a pipe) failed to seek.
    """
    try:
        stream.flush()
        descriptor = stream.fileno()
    except (AttributeError, ValueError, OSError):  # None, or closed: nothing to write on
        return stream
    return io.TextIOWrapper(
        open(descriptor, "wb", closefd=False),
        encoding=stream.encoding if stream.isatty() else "utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )


def watch_output(stdout: TextIO, stderr: TextIO) -> tuple[Any, Any, LineHandler]:
    """Stand-ins for ``stdout`` and ``stderr`` that note line ends, and a log handler writing
    to the second one that starts each record on a line of its own."""
    ends = LineEnds()
    out, err = WatchedStream(stdout, ends), WatchedStream(stderr, ends)
    return out, err, LineHandler(err, ends, out)
