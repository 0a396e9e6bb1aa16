"""Per-API log files under ``$INFERD_HOME/logs``, rotated by size, and how they are read back.

Two files per API, in a folder per deployment: ``<api>.log`` holds the replicas' output and
inferd's events (what ``inferd logs API`` shows, as Cortex showed a replica's output),
``<api>.access.log`` one JSON line per request. The two share ``INFERD_LOG_MAX_BYTES``
(default 64 MiB): each is rotated by the standard library's ``RotatingFileHandler`` at half of
it, keeping ``INFERD_LOG_BACKUPS`` older files (default 3), so an API's logs never hold more
than ``(1 + backups) x max_bytes`` in all, however much its predictor prints.

Writers hand whole batches of lines to ``RotatingLog.write`` (one record per batch, not per
line): the access log is written from the gateway's hot path. Readers address a position as a
``Cursor`` (the file's inode and an offset), which survives a rotation: ``read_after`` finishes
the rotated file before it starts the new one.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAX_BYTES_ENV = "INFERD_LOG_MAX_BYTES"
BACKUPS_ENV = "INFERD_LOG_BACKUPS"
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_BACKUPS = 3
READ_CHUNK = 1 << 20
STAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
JSON_TIME = re.compile(rb'^\{"time":(\d+(?:\.\d+)?)')


def log_path(home: Path, api: str) -> Path:
    """The API's replica output and inferd's events; ``api`` is its key, so the file is
    ``logs/<deployment>/<api>.log`` (API names are unique per deployment)."""
    return home / "logs" / f"{api}.log"


def access_path(home: Path, api: str) -> Path:
    """The API's access lines (one JSON object per request); ``api`` is its key."""
    return home / "logs" / f"{api}.access.log"


def _env_int(name: str, default: int, minimum: int) -> int:
    try:
        return max(minimum, int(os.environ.get(name, default)))
    except ValueError:
        return default


def max_bytes() -> int:
    return _env_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, 4096)


def api_file_bytes() -> int:
    """Where each of an API's two log files rotates: they share ``max_bytes()``."""
    return max(4096, max_bytes() // 2)


def backups() -> int:
    return _env_int(BACKUPS_ENV, DEFAULT_BACKUPS, 0)


class _Handler(logging.handlers.RotatingFileHandler):
    reported = False  # whether a failure to write this file was said (once) in the operator's log

    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk, or a folder that cannot be written, must not stop serving: the lines are
        # dropped. The first failure is said once, so a log that stays empty has its reason.
        if not self.reported:
            self.reported = True  # first: a failure to write the report itself ends here
            failure = sys.exc_info()[1]
            reason = failure.strerror if isinstance(failure, OSError) else None
            logging.getLogger("inferd").error(
                "cannot write %s (%s): its lines are dropped while it cannot be written",
                self.baseFilename,
                reason or failure,
            )

    def _open(self) -> Any:
        # Owner only, as the token: the files hold what handlers print, clients' addresses and
        # (payload logs) request bodies, also in an $INFERD_HOME that others may read; a file
        # an older inferd made readable to all (0644) is made the owner's when it is opened.
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(descriptor, 0o600)
        return open(descriptor, self.mode, encoding=self.encoding, errors=self.errors)


class RotatingLog:
    """Appends text to one file through a ``RotatingFileHandler`` (one record per write)."""

    def __init__(
        self,
        path: Path,
        limit: int | None = None,
        keep: int | None = None,
        whole_lines: bool = False,
        hold_open: bool = False,
    ) -> None:
        self.path = path
        # Closed after each write unless ``hold_open`` (the payload logs close theirs when idle):
        # an API's log and access log each held a descriptor for good, and an operator with an
        # open-file limit of 256 and 60 APIs ran out of descriptors once each API had answered
        # once: every connection refused, `inferd get` failing, until it was restarted. A write
        # is a batch (the access log flushes a few times a second), so reopening costs little.
        self.hold_open = hold_open
        # A line longer than a piece is cut (logs: every file stays within the limit), or written
        # whole (records that must stay one JSON document a line: that file may pass the limit).
        self.whole_lines = whole_lines
        self.limit = max_bytes() if limit is None else limit
        # A folder that cannot be made (a file in its place, no permission) leaves the log's
        # lines dropped (handleError says so once) instead of stopping what writes them: an
        # operator whose API log folder was a file exited at every start, restarted for ever.
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = _Handler(
            path,
            maxBytes=self.limit,
            backupCount=backups() if keep is None else keep,
            encoding="utf-8",
            errors="replace",
            delay=True,
        )
        # A record may overshoot the limit by its own size: keep records well under it.
        self._chunk = max(1024, self.limit // 8)

    def write(self, text: str) -> None:
        """Append ``text`` (whole lines, the last newline optional), in pieces of whole lines.

        Each piece is sliced once from where the last one ended: the text is never copied again
        (re-slicing the rest made a batch of large records cost its size squared).
        """
        text = text.removesuffix("\n")
        if self.whole_lines and self._handler.stream is None and _ends_inside_a_line(self.path):
            # A writer stopped in the middle of a record (killed, or the disk filled): the next
            # record starts a line of its own instead of being glued to that torn one.
            text = "\n" + text
        start, end, chunk = 0, len(text), self._chunk
        while start < end:
            stop = start + chunk
            skip = 1  # the newline a piece ends at is not written twice
            if stop >= end:
                stop = end
            else:
                cut = text.rfind("\n", start, stop)
                if cut >= start:
                    stop = cut
                elif self.whole_lines:  # one line longer than a piece: to its end
                    cut = text.find("\n", stop)
                    stop = end if cut < 0 else cut
                elif not text.startswith("\n", stop):
                    skip = 0  # cut inside the line: the rest goes on in the next piece
            # handle(), not emit(): under the handler's lock, as threads may share one log
            self._handler.handle(logging.makeLogRecord({"msg": text[start:stop]}))
            start = stop + skip
        if not self.hold_open:
            self._release()

    def _release(self) -> None:
        """Close the file until the next write (which opens it again)."""
        handler = self._handler
        handler.acquire()
        try:
            stream, handler.stream = handler.stream, None
            if stream is not None:
                stream.close()
        finally:
            handler.release()

    def close(self) -> None:
        self._handler.close()


def _ends_inside_a_line(path: Path) -> bool:
    """Whether the file at ``path`` has bytes after its last newline."""
    try:
        with path.open("rb") as file:
            if file.seek(0, os.SEEK_END) == 0:
                return False
            file.seek(-1, os.SEEK_END)
            return file.read(1) != b"\n"
    except OSError:
        return False


def files_of(path: Path) -> list[Path]:
    """The existing files of one log, oldest first (``x.log.3`` ... ``x.log.1``, ``x.log``)."""
    found = []
    index = 1
    while True:
        backup = path.with_name(f"{path.name}.{index}")
        if not backup.exists():
            break
        found.append(backup)
        index += 1
    found.reverse()
    if path.exists():
        found.append(path)
    return found


@dataclass(frozen=True)
class Cursor:
    """A position in a log: the file (by inode, which rotation keeps) and a byte offset."""

    inode: int
    offset: int

    def encode(self) -> str:
        return f"{self.inode}:{self.offset}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        inode, _, offset = text.partition(":")
        return cls(int(inode), int(offset))


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def end_cursor(path: Path) -> Cursor:
    """The end of the current file (what ``-f`` follows from when nothing is shown first)."""
    try:
        stat = path.stat()
    except OSError:
        return Cursor(0, 0)
    return Cursor(stat.st_ino, stat.st_size)


def tail_cursor(path: Path, lines: int) -> Cursor:
    """Where the last ``lines`` lines of the log start (older files included when needed)."""
    files = files_of(path)
    if lines <= 0 or not files:
        return end_cursor(path)
    wanted = lines
    for file in reversed(files):
        try:
            with file.open("rb") as handle:
                inode = os.fstat(handle.fileno()).st_ino
                position = handle.seek(0, os.SEEK_END)
                if position:
                    handle.seek(position - 1)
                    if handle.read(1) == b"\n":
                        position -= 1  # the last newline ends a line; it starts none
                if not position:
                    continue
                while position > 0:
                    start = max(0, position - (1 << 16))
                    handle.seek(start)
                    block = handle.read(position - start)
                    found = block.count(b"\n")
                    if found >= wanted:
                        cut = len(block)
                        for _ in range(wanted):
                            cut = block.rindex(b"\n", 0, cut)
                        return Cursor(inode, start + cut + 1)
                    wanted -= found
                    position = start
        except OSError:
            continue
        wanted -= 1  # the whole file is shown, its first line too
        if wanted == 0:
            return Cursor(inode, 0)
    return Cursor(_inode(files[0]) or 0, 0)


def line_time(line: bytes, default: float) -> float:
    """When a line was written: its leading timestamp (events, replica output, access lines)."""
    found = STAMP.match(line)
    if found is not None:
        try:
            return _wall_clock(time.strptime(found.group(1).decode(), "%Y-%m-%d %H:%M:%S"), default)
        except (ValueError, OverflowError):
            return default
    found = JSON_TIME.match(line)
    if found is not None:
        return float(found.group(1))
    return default


def _wall_clock(parts: time.struct_time, previous: float) -> float:
    """Epoch seconds of a local time a log line starts with, written after a line of ``previous``.

    The hour daylight saving time ends is shown twice, and ``mktime`` may read it as the first:
    the lines of the second were an hour older than they are, so ``inferd logs --since 10m``
    then showed none of them. A time that is before the line before it is read as its later
    reading, where there is one.
    """
    first = time.mktime(parts)
    if first >= previous:
        return first
    readings = (time.mktime(time.struct_time((*parts[:8], dst))) for dst in (0, 1))
    later = [when for when in readings if when >= previous and time.localtime(when)[:6] == parts[:6]]
    return min(later, default=first)


def since_cursor(path: Path, since: float) -> Cursor:
    """Where the first line written at or after ``since`` (epoch seconds) starts.

    A line without a timestamp belongs to the time of the line before it.
    """
    for file in files_of(path):
        try:
            stat = file.stat()
        except OSError:
            continue
        if stat.st_mtime < since:
            continue  # nothing in this file is recent enough
        with file.open("rb") as handle:
            offset = 0
            when = 0.0
            for line in handle:
                when = line_time(line, when)
                if when >= since:
                    return Cursor(stat.st_ino, offset)
                offset += len(line)
    return end_cursor(path)


def read_after(path: Path, cursor: Cursor, limit: int = READ_CHUNK) -> tuple[str, Cursor]:
    """Whole lines after ``cursor`` (at most about ``limit`` bytes) and the cursor after them.

    A cursor into a file that was rotated continues in that file (now ``x.log.1``), then in
    the newer ones; a cursor into a file rotated away starts again at the oldest file kept.
    """
    files = files_of(path)
    inodes = [_inode(file) for file in files]
    if not files:
        return "", Cursor(0, 0)
    if cursor.inode in inodes:
        index = inodes.index(cursor.inode)
        offset = cursor.offset
    else:
        index, offset = 0, 0
    chunks: list[bytes] = []
    total = 0
    while index < len(files):
        file = files[index]
        inode = inodes[index] or 0
        try:
            with file.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                if offset > size:
                    offset = 0  # truncated or replaced
                handle.seek(offset)
                data = handle.read(max(0, limit - total))
        except OSError:
            data = b""
            size = offset
        if b"\n" in data:
            data = data[: data.rindex(b"\n") + 1]
        elif len(data) < limit - total:
            data = b""  # a line still being written: wait for its end
        chunks.append(data)
        total += len(data)
        offset += len(data)
        if offset < size or total >= limit or index == len(files) - 1:
            return b"".join(chunks).decode("utf-8", "replace"), Cursor(inode, offset)
        index += 1
        offset = 0
    return b"".join(chunks).decode("utf-8", "replace"), Cursor(inodes[-1] or 0, offset)


# The most of a log a tail reads back through: a line whose start lies further back is not shown
# (the dashboard reads two logs of every API on every refresh of every open page).
TAIL_SCAN_BYTES = 1 << 20


def tail_lines(path: Path, count: int, width: int = 2000) -> list[str]:
    """The last ``count`` whole lines of a log (older files included), each cut to ``width``
    characters, for a quick look. Read back from the end: a long line costs a scan for its start
    and ``width`` characters, and hides none after it; no more than ``TAIL_SCAN_BYTES`` are
    scanned (a line that starts further back is not shown)."""
    found: list[str] = []  # newest first
    budget = TAIL_SCAN_BYTES
    for file in reversed(files_of(path)):
        try:
            with file.open("rb") as handle:
                budget = _tail_of(handle, count, width, budget, found)
        except OSError:
            continue
        if len(found) >= count or budget <= 0:
            break
    return found[::-1]


def _tail_of(handle: BinaryIO, count: int, width: int, budget: int, found: list[str]) -> int:
    """Add ``handle``'s last lines to ``found`` (newest first) until it holds ``count``; the
    budget left. A last line without its newline is still being written: left out."""
    position = handle.seek(0, os.SEEK_END)
    end: int | None = None  # where the line being looked for ends (its newline), once known
    while position > 0 and len(found) < count and budget > 0:
        start = max(0, position - (1 << 16))
        handle.seek(start)
        block = handle.read(position - start)
        budget -= len(block)
        cut = len(block)
        while len(found) < count:
            newline = block.rfind(b"\n", 0, cut)
            if newline < 0:
                break
            if end is not None:
                found.append(_line_at(handle, start + newline + 1, end, width))
            cut, end = newline, start + newline
        position = start
    if position == 0 and end is not None and len(found) < count:  # the file's first line
        found.append(_line_at(handle, 0, end, width))
    return budget


def _line_at(handle: BinaryIO, start: int, end: int, width: int) -> str:
    """The line between ``start`` and ``end`` (its newline), cut to ``width`` characters."""
    handle.seek(start)
    return handle.read(min(end - start, 4 * width)).decode("utf-8", "replace")[:width]


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist); links are not followed,
    and a file hard-linked into several snapshots counts once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, name))
                if info.st_nlink > 1:
                    if (info.st_dev, info.st_ino) in seen:
                        continue
                    seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total
