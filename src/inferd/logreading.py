"""Reading the rotated log files of ``logfiles`` back: ``inferd logs``, its ``--since`` and
``--tail``, ``-f``, the dashboard's last lines and the payload log's records.

A reader addresses a position as a ``Cursor`` (the file's inode and an offset), which survives a
rotation: ``read_after`` finishes the rotated file before it starts the new one.
"""

from __future__ import annotations

import io
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

READ_CHUNK = 1 << 20
STAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
JSON_TIME = re.compile(rb'^\{"time":(\d+(?:\.\d+)?)')


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
        """The cursor ``encode`` wrote; ``ValueError`` for any other text (a negative offset too)."""
        inode, _, offset = text.partition(":")
        cursor = cls(int(inode), int(offset))
        if cursor.inode < 0 or cursor.offset < 0:
            raise ValueError(f"a negative position in cursor {text!r}")
        return cursor


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
            offset = _first_since(handle, since)
        if offset is not None:
            return Cursor(stat.st_ino, offset)
    return end_cursor(path)


# How much of a log ``since_cursor`` passes over at once, by the time of its last line.
SINCE_BLOCK = 1 << 16


def _first_since(handle: BinaryIO, since: float) -> int | None:
    """The offset of the first line of ``handle`` written at or after ``since``, if any.

    A log's lines are written in the order of their times, so a block whose last line is older
    than ``since`` is passed over whole; only the block where the times reach ``since`` is read
    line by line. Reading every line's time (``strptime``) cost 2.4 s for a full 32 MiB log, on
    the operator's event loop: ``inferd logs API --since 1m`` stalled every API's requests.
    """
    start, when = 0, 0.0  # where the lines not passed over start; the time of the last one before
    while True:
        size = SINCE_BLOCK
        handle.seek(start)
        block = handle.read(size)
        while b"\n" not in block and len(block) == size:  # a line longer than the block
            size *= 2
            handle.seek(start)
            block = handle.read(size)
        if len(block) < size:  # the rest of the file
            return _scan(io.BytesIO(block), start, when, since)[0]
        end = block.rfind(b"\n")
        last = block[block.rfind(b"\n", 0, end) + 1 : end]
        if STAMP.match(last) or JSON_TIME.match(last):
            newest = line_time(last, when)
            if newest < since:
                start, when = start + end + 1, newest
                continue
        found, when = _scan(io.BytesIO(block[: end + 1]), start, when, since)
        if found is not None:
            return found
        start += end + 1


def _scan(lines: BinaryIO, offset: int, when: float, since: float) -> tuple[int | None, float]:
    """The offset of the first of ``lines`` (starting at ``offset``) written at or after ``since``,
    if any, and the time of the last line read."""
    for line in lines:
        when = line_time(line, when)
        if when >= since:
            return offset, when
        offset += len(line)
    return None, when


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
