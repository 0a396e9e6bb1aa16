"""Payload logs on disk: ``$INFERD_HOME/payloads/<deployment>/<api>.jsonl``, one JSON record a line.

The gateway keeps sampled records in memory (``inferd.gateway.payloads``); ``PayloadWriter``
takes them every 20 ms, turns them into lines on the event loop (a few records a turn), and
appends the lines from a worker thread, so the event loop never waits on the disk. Each file
rotates at its API's ``payload_log.max_size`` keeping one older file, so an API's payloads never
take more than twice that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from inferd.gateway.payloads import PayloadBuffer, base64_of, body_of, json_body, parse_bodies
from inferd.logfiles import RotatingLog
from inferd.logreading import files_of
from inferd.operator.state import StateError
from inferd.widejson import loads_as_written

log = logging.getLogger("inferd.payloads")

# Seconds between writes. Under a 100% shadow at one connection (every request recorded), the
# clients' p99 was 4.8-6.2 ms with 0.2 s, 2.3-3.0 ms with 0.02 s (p50 and p90 the same).
FLUSH_EVERY = 0.02
# Records turned into lines in one turn of the event loop (or fewer, once their bodies reach
# ENCODE_BYTES): the loop serves requests between two such steps. This work was the worker
# thread's, and a thread running Python takes the GIL from the loop in turns (the loop waited on
# it, then each of the thread's system calls waited on the loop): under a 100% shadow at one
# connection the gateway spent about 60 us more CPU per request than without one, and about 30
# once the thread only wrote (bench/shadow_latency.py: client p50 1.30-1.52x -> 1.12-1.24x).
ENCODE_CHUNK = 32
ENCODE_BYTES = 256 * 1024
KEEP = 1  # older files kept
IDLE_CLOSE = 5.0  # a file not written this long is closed (a deleted API's, for `inferd prune`)


Records = list[tuple[str, int, dict[str, Any]]]  # (API key, its log's max bytes, record)
Lines = dict[tuple[str, int], list[bytes]]  # (API key, max bytes) -> the JSON lines for its log


def steps(records: Records) -> Iterator[Records]:
    """``records`` in pieces of at most ``ENCODE_CHUNK`` records or about ``ENCODE_BYTES`` of bodies."""
    start = size = 0
    for at, (_, _, record) in enumerate(records):
        shadow = record.get("shadow")
        size += len(record.get("request") or b"") + len(record.get("response") or b"")
        if isinstance(shadow, dict):  # its answer is parsed too
            size += len(shadow.get("response") or b"")
        if at + 1 - start == ENCODE_CHUNK or size >= ENCODE_BYTES:
            yield records[start : at + 1]
            start, size = at + 1, 0
    if start < len(records):
        yield records[start:]


def encode(records: Records, lines: Lines) -> Lines:
    """Add each record, bodies parsed (``parse_bodies``), to the lines of its log."""
    for key, limit, record in records:
        lines.setdefault((key, limit), []).append(_line(record))
    return lines


def _line(record: dict[str, Any]) -> bytes:
    parsed = parse_bodies(record)
    try:  # on the event loop: plain orjson first (codec's layers cost a third more on a small record)
        return orjson.dumps(parsed)
    except TypeError:
        pass
    from inferd import codec  # NumPy's import: not for `inferd payloads` (read_payloads)

    try:
        return codec.dumps(parsed)  # an integer beyond 64 bits as its digits
    except TypeError:
        # A body nested as deep as JSON answers go (254 levels: a predictor's answer, or a
        # client's request) is deeper than orjson writes inside the record; it is kept as the
        # bytes it was, in base64 (the writer died on it, and no record after it was written).
        return codec.dumps(parse_bodies(record, _shallow_body))


def _shallow_body(data: bytes, parse: Callable[[bytes], dict[str, Any]] = body_of) -> dict[str, Any]:
    """``parse(data)`` when it can be written inside a record (a shadow's, the deepest), else
    its base64."""
    from inferd import codec

    body = parse(data)
    try:
        codec.dumps([[[body]]])
    except TypeError:
        return base64_of(data)
    return body


def readable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its bodies kept as text (``json_text``: gateway/payloads.py's
    ``TEXT_BYTES``), its shadow's too, parsed as the writer parses smaller ones."""
    for key in ("request", "response"):
        body = record.get(key)
        if isinstance(body, dict) and isinstance(text := body.get("json_text"), str):
            record[key] = _shallow_body(text.encode(), json_body)
    shadow = record.get("shadow")
    if isinstance(shadow, dict):
        readable(shadow)
    return record


def payload_path(home: Path, key: str) -> Path:
    """The payload log of API ``key`` (``deployment/api``)."""
    return home / "payloads" / f"{key}.jsonl"


class PayloadWriter:
    """Drains a ``PayloadBuffer`` to disk until cancelled."""

    def __init__(self, home: Path, buffer: PayloadBuffer) -> None:
        self.home = home
        self.buffer = buffer
        self._logs: dict[str, RotatingLog] = {}
        self._written: dict[str, float] = {}  # key -> when its file was last written (monotonic)
        # What a stop in the middle of ``flush`` must still see to: the records it took, until
        # the worker thread has their lines; then that thread's write.
        self._taken: Records = []
        self._writing: asyncio.Future[None] | None = None

    async def run_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY)
                await self.flush()
        finally:
            if self._writing is not None:  # its lines first, and no file closed under it
                await asyncio.wait([self._writing])
            taken, self._taken = self._taken, []  # (turning into lines again is harmless)
            self.write(taken + self.buffer.take())
            self.close()

    def close(self) -> None:
        for writer in self._logs.values():
            writer.close()
        self._logs.clear()

    async def flush(self) -> None:
        taken = self._taken = self.buffer.take()
        if taken:
            lines: Lines = {}
            for step in steps(taken):
                encode(step, lines)
                await asyncio.sleep(0)  # the requests that arrived meanwhile go first
            self._taken = []
            self._writing = asyncio.get_running_loop().run_in_executor(None, self.write_lines, lines)
            await asyncio.shield(self._writing)  # a stop meanwhile waits for it (``run_forever``)
            self._writing = None
        elif self._written:
            self.close_idle(time.monotonic())

    def write(self, records: Records) -> None:
        """Write ``records`` now, from this thread (the last ones, as the writer stops)."""
        self.write_lines(encode(records, {}))

    def write_lines(self, lines: Lines) -> None:
        """Append each log's lines (the file I/O: the worker thread's part)."""
        for (key, limit), batch in lines.items():
            writer = self._logs.get(key)
            if writer is None or writer.limit != limit:
                if writer is not None:
                    writer.close()
                writer = self._logs[key] = RotatingLog(
                    payload_path(self.home, key), limit, KEEP, whole_lines=True, hold_open=True
                )
            try:
                writer.write(b"\n".join(batch).decode())
            except OSError as exc:
                log.error("cannot write the payload log of api '%s': %s", key, exc)
        now = time.monotonic()
        self._written.update((key, now) for key, _ in lines)
        self.close_idle(now)

    async def release(self, live: Collection[str]) -> None:
        """Close the files of the APIs not in ``live`` (keys: the deleted ones), once no write is
        under way, for ``inferd prune`` to remove them: one written in the last ``IDLE_CLOSE``
        seconds was open, and left by a prune right after the delete."""
        while self._writing is not None:
            await asyncio.wait([self._writing])
        for key in [key for key in self._logs if key not in live]:
            self._written.pop(key, None)
            self._logs.pop(key).close()

    def close_idle(self, now: float) -> None:
        """Close the files not written for ``IDLE_CLOSE`` seconds (reopened on the next record)."""
        for key, when in list(self._written.items()):
            if now - when > IDLE_CLOSE:
                del self._written[key]
                idle = self._logs.pop(key, None)
                if idle is not None:
                    idle.close()


def read_payloads(home: Path, key: str, last: int | None = None) -> list[dict[str, Any]]:
    """The recorded payloads of API ``key``, oldest first (only the ``last`` ones when given).

    The files are opened newest first, then read: the writer may rotate between two opens (the
    current file becomes the older one), and opened oldest first, the file rotated in between
    was never read (`inferd replay` missed the newest records, and replayed older ones). Opened
    newest first, that file is met twice, and read once.
    """
    # `inferd payloads -n 99999999999999999999999`: more than a deque can hold is all of them
    kept: deque[dict[str, Any]] = deque(maxlen=None if last is None else min(last, sys.maxsize))
    with contextlib.ExitStack() as stack:
        opened: list[BinaryIO] = []
        seen: set[tuple[int, int]] = set()
        for path in reversed(files_of(payload_path(home, key))):
            try:
                handle: BinaryIO = stack.enter_context(path.open("rb"))
                found = os.fstat(handle.fileno())
            except FileNotFoundError:  # rotated away since it was listed
                continue
            except OSError as exc:  # was: "no payloads recorded", as if the API had none
                raise StateError(f"cannot read the payload log {path} ({exc.strerror or exc})") from None
            if (found.st_dev, found.st_ino) not in seen:
                seen.add((found.st_dev, found.st_ino))
                opened.append(handle)
        for handle in reversed(opened):
            try:
                for line in handle:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        record = loads_as_written(line)
                        if isinstance(record, dict):  # a line of other JSON (`[1]`, `5`) is none
                            kept.append(readable(record))
            except OSError as exc:
                raise StateError(
                    f"cannot read the payload log {handle.name} ({exc.strerror or exc})"
                ) from None
    return list(kept)


TAIL_BYTES = 256 * 1024  # the longest record the dashboard shows
BLOCK_BYTES = 64 * 1024  # read from a log's end a block at a time
SCAN_BYTES = 32 << 20  # the most of a file the dashboard reads (records too long to show included)
SHOWN_CHARS = 160  # a body shown on the dashboard is cut to this many characters


def _shown(body: object) -> str:
    from inferd import codec  # NumPy's import: only where the dashboard shows records

    if not body or not isinstance(body, dict):  # none, or a line another tool wrote (a 500 here)
        return ""
    text = body.get("json_text")  # a large body, kept as the JSON text it was
    if not isinstance(text, str):
        text = (
            codec.dumps(body["json"]).decode() if "json" in body else "base64:" + str(body.get("base64", ""))
        )
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def recent_payloads(home: Path, key: str, last: int) -> list[dict[str, Any]]:
    """The last ``last`` records of API ``key``, newest first, with bodies cut short (the dashboard's
    view: the logs are read from their end; a record longer than ``TAIL_BYTES`` is passed over, not
    shown, and no more than ``SCAN_BYTES`` of a file are read)."""
    found: list[dict[str, Any]] = []
    for path in reversed(files_of(payload_path(home, key))):
        try:
            with path.open("rb") as file:
                for line in _lines_backward(file):
                    if len(found) == last:
                        return found
                    with contextlib.suppress(orjson.JSONDecodeError):
                        record = loads_as_written(line) if line else None
                        if isinstance(record, dict):
                            found.append(_sample(record))
        except OSError:
            continue
    return found


def _lines_backward(file: BinaryIO) -> Iterator[bytes]:
    """The lines of ``file``, last first; one longer than ``TAIL_BYTES`` is read over, not kept
    (yielded as ``b""``). Stops after ``SCAN_BYTES``."""
    position = file.seek(0, 2)
    scanned = 0
    tail = b""  # the end of the line being read: its start is further back
    long = False  # that line is longer than TAIL_BYTES (its bytes are not kept)
    while position > 0:
        if scanned >= SCAN_BYTES:
            return
        step = min(BLOCK_BYTES, position)
        position -= step
        file.seek(position)
        parts = file.read(step).split(b"\n")
        scanned += step
        if len(parts) == 1:  # no line starts in this block
            long = long or len(parts[0]) + len(tail) > TAIL_BYTES
            tail = b"" if long else parts[0] + tail
            continue
        yield b"" if long or len(parts[-1]) + len(tail) > TAIL_BYTES else parts[-1] + tail
        for part in reversed(parts[1:-1]):
            yield b"" if len(part) > TAIL_BYTES else part
        tail, long = parts[0], len(parts[0]) > TAIL_BYTES
        if long:
            tail = b""
    yield b"" if long else tail


def _sample(record: dict[str, Any]) -> dict[str, Any]:
    shadow = record.get("shadow")
    return {
        "request_id": record.get("request_id"),
        "time": record.get("time"),
        "status": record.get("status"),
        "latency_ms": record.get("latency_ms"),
        "request": _shown(record.get("request")),
        "response": _shown(record.get("response")),
        "shadow": {
            "api": shadow.get("api"),
            "status": shadow.get("status"),
            "latency_ms": shadow.get("latency_ms"),
            "response": _shown(shadow.get("response")),
            "agrees": _agrees(record, shadow),
        }
        if isinstance(shadow, dict)
        else None,
    }


def _agrees(record: dict[str, Any], shadow: dict[str, Any]) -> bool:
    """The gateway's verdict on the shadow's answer (the one its ``agreed`` count took: the same
    status and bytes, a V2 answer's model name aside); records written before it kept one are
    compared here."""
    verdict = shadow.get("agrees")
    if isinstance(verdict, bool):
        return verdict
    return shadow.get("status") == record.get("status") and shadow.get("response") == record.get("response")
