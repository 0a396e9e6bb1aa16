"""Replica output and engine events into each API's rotated log (``logfiles``).

A replica's stdout and stderr are one pipe that the engine reads on its event loop, so every
byte a handler prints passes through the API's ``RotatingLog`` (a replica writing straight into
a file could never be rotated). A line gets a time, the API and the replica, so ``inferd logs
--since`` and a reader of a merged log know when and where it came from; only the replica's own
log records (``replica/worker.py``'s format: a time, the API and this replica's id) carry them
already. A line the handler stamped with a time of its own is prefixed too: it names no replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from inferd.logfiles import RotatingLog, api_file_bytes

MAX_LINE = 1 << 20  # a longer line without a newline is written in pieces
# Control bytes but tab and line ends: written as ``\xNN`` text. One NUL made ``grep`` call the
# whole log a binary file, and escape sequences reached the terminal of ``inferd logs``.
CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _escaped(found: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % found.group()[0]


class Events(Protocol):
    """Where the engine's parts tell what happened to an API: its log (``LocalEngine._event``)."""

    def __call__(self, api: str, text: str, level: int = logging.INFO) -> None: ...


class ApiLogs:
    """One ``RotatingLog`` per API in ``folder`` (``<api>.log``); shared by its replicas and the
    engine."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, RotatingLog] = {}

    def file(self, api: str) -> RotatingLog:
        out = self._files.get(api)
        if out is None:
            out = self._files[api] = RotatingLog(self.folder / f"{api}.log", api_file_bytes())
        return out

    def event(self, api: str, text: str) -> None:
        """One line of inferd's own about ``api`` (load errors, restarts, versions)."""
        self.file(api).write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {api} [inferd] {text}")

    def attach(self, api: str, replica_id: str, read_fd: int) -> None:
        """Copy what the replica writes on ``read_fd`` into the API's log until it closes.

        The fd is watched with ``add_reader`` and closed here at its end: this code alone owns
        it (a pipe transport and a file object both closing it would close a reused number).
        """
        _watch(read_fd, ReplicaOutput(self.file(api), api, replica_id))

    def forget(self, api: str) -> None:
        """Close the API's file (it was deleted): ``inferd prune`` may then remove it."""
        out = self._files.pop(api, None)
        if out is not None:
            out.close()

    def close(self) -> None:
        for out in self._files.values():
            out.close()
        self._files.clear()


def forward(read_fd: int, say: Callable[[str], None]) -> None:
    """Pass what a replica writes on ``read_fd`` to ``say`` (``inferd serve``'s console, which
    never blocks), whole lines at a time, until it closes. A replica writing on the terminal
    itself waited in its print once the terminal stopped reading, or read slower than another
    API printed."""
    _watch(read_fd, ConsoleOutput(say))


def _watch(read_fd: int, output: asyncio.Protocol) -> None:
    loop = asyncio.get_running_loop()
    os.set_blocking(read_fd, False)

    def readable() -> None:
        try:
            data = os.read(read_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            output.data_received(data)
            return
        loop.remove_reader(read_fd)
        os.close(read_fd)
        output.connection_lost(None)

    loop.add_reader(read_fd, readable)


class ConsoleOutput(asyncio.Protocol):
    """One replica's output, passed on as whole lines (a longer one in ``MAX_LINE`` pieces)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        data = self._partial + data
        end = data.rfind(b"\n")
        if end < 0 and len(data) < MAX_LINE:
            self._partial = data
            return
        if end < 0:
            self._partial, end = b"", len(data)
        else:
            self._partial = data[end + 1 :]
        # a line at a time: past the console's buffer each is dropped and counted as one line
        for line in data[:end].decode("utf-8", "replace").split("\n"):
            self.say(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._partial:
            self.say(self._partial.decode("utf-8", "replace"))
            self._partial = b""


class ReplicaOutput(asyncio.Protocol):
    """Reads one replica's output pipe; writes whole lines, each read as one record."""

    def __init__(self, out: RotatingLog, api: str, replica_id: str) -> None:
        self.out = out
        self.prefix = f" {api} [{replica_id}] ".encode()
        # The replica's own records: "2026-11-29 08:00:00,123 classifier [classifier-1] ...".
        self._record = re.compile(
            rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d+)? \S+ \[" + re.escape(replica_id.encode()) + rb"\] "
        )
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        data = self._partial + data
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < MAX_LINE:
                self._partial = data
                return
            end = len(data) - 1
        self._partial = data[end + 1 :]
        self._write(data[: end + 1])

    def _write(self, data: bytes) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S").encode()
        lines = [
            line if self._record.match(line) else stamp + self.prefix + line
            for line in data.rstrip(b"\n").split(b"\n")
        ]
        text = b"\n".join(lines)
        self.out.write(CONTROL.sub(_escaped, text).decode("utf-8", "replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._partial:
            self._write(self._partial)
            self._partial = b""
