"""Payload logs, the gateway's half: sampled requests and answers kept in memory until written.

The hot path only appends a small dict here (for sampled requests of APIs with
``payload_log``); the operator drains the buffer off the event loop's critical path and writes
it to disk (``inferd.operator.payloads``). When the writer falls behind, records are dropped and
counted rather than let memory grow.
"""

from __future__ import annotations

import time
from base64 import b64encode
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson

from inferd.widejson import loads_as_written

if TYPE_CHECKING:
    from collections.abc import Callable

    from inferd.gateway.http import HttpConnection
    from inferd.gateway.queue import ApiQueue

MAX_PENDING = 10_000
# The bodies records may hold while they wait: 10,000 records of 10 MiB bodies would be 100 GiB.
MAX_PENDING_BYTES = 256 << 20
DEFAULT_MAX_BYTES = 1 << 24  # payload_log's default max_size (16Mi)


# A body larger than this is written as its text (``json_text``), not parsed: parsing and writing
# a 1.2 MB request's JSON held the event loop 40 ms (0.1 ms as text); it is parsed when read
# (``inferd.operator.payloads.readable``).
TEXT_BYTES = 64 * 1024


def body_of(data: bytes) -> dict[str, Any]:
    """A body as JSON when it is JSON, else as base64; one over ``TEXT_BYTES`` as its text."""
    if len(data) > TEXT_BYTES:
        try:
            return {"json_text": data.decode()}
        except UnicodeDecodeError:  # no JSON, and no text to keep as such
            return base64_of(data)
    return json_body(data)


def json_body(data: bytes) -> dict[str, Any]:
    """A body as JSON when it is JSON, else as base64."""
    try:
        return {"json": loads_as_written(data)} if data else {"json": None}
    except orjson.JSONDecodeError:
        return base64_of(data)


def version_of(queue: ApiQueue, replica_id: str) -> str:
    """The API version the replica ``replica_id`` serves ("" when it is gone)."""
    return next((h.version for h in queue.replicas if h.replica_id == replica_id), "")


def head_of(queue: ApiQueue, conn: HttpConnection, status: int) -> dict[str, Any]:
    """The cheap part of a record (no body parsed yet: ``record_of`` or ``Shadows`` add them)."""
    return {
        "time": time.time(),
        "request_id": conn.request_id.decode("latin-1"),
        "api": queue.key,
        "version": conn.replica_id,  # a replica id until the bodies are added
        "protocol": conn.protocol,
        "status": status,
        "latency_ms": round((perf_counter() - conn.started) * 1000, 3),
    }


def add_bodies(queue: ApiQueue, record: dict[str, Any], request: bytes, answer: bytes) -> dict[str, Any]:
    """Complete a record made by ``head_of``: the API version and both bodies, as bytes (the
    writer parses them, off the event loop: ``parse_bodies``)."""
    record["version"] = version_of(queue, record["version"])
    record["request"] = request
    record["response"] = answer
    return record


def base64_of(data: bytes) -> dict[str, Any]:
    """A body as base64, whatever it holds."""
    return {"base64": b64encode(data).decode()}


def parse_bodies(
    record: dict[str, Any], parse: Callable[[bytes], dict[str, Any]] = body_of
) -> dict[str, Any]:
    """A copy of ``record`` with its bodies (its shadow's too) as JSON, or base64 when not JSON
    (``parse``); done by the writer. ``record`` keeps its bytes, to be parsed again another way."""
    parsed = dict(record)
    for key in ("request", "response"):
        if isinstance(record.get(key), bytes):
            parsed[key] = parse(record[key])
    shadow = record.get("shadow")
    if isinstance(shadow, dict):
        parsed["shadow"] = parse_bodies(shadow, parse)
    return parsed


def record_of(
    queue: ApiQueue, conn: HttpConnection, request: bytes, status: int, answer: bytes
) -> dict[str, Any]:
    """One answered request as the payload log keeps it."""
    return add_bodies(queue, head_of(queue, conn, status), request, answer)


class PayloadBuffer:
    """Records waiting to be written: ``(api key, max bytes, record)``."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, int, dict[str, Any]]] = []
        self.size = 0  # bytes of the bodies the pending records hold
        self.dropped = 0

    def add(self, queue: ApiQueue, conn: HttpConnection, request: bytes, status: int, answer: bytes) -> None:
        if len(self.pending) >= MAX_PENDING or self.size >= MAX_PENDING_BYTES:
            self.dropped += 1
            return
        self.put(queue, record_of(queue, conn, request, status, answer))

    def put(self, queue: ApiQueue, record: dict[str, Any]) -> None:
        """Keep ``record`` for ``queue``'s payload log (rotated at its ``max_size``, or the default's)."""
        if len(self.pending) >= MAX_PENDING or self.size >= MAX_PENDING_BYTES:
            self.dropped += 1
            return
        shadow = record.get("shadow")
        self.size += len(record.get("request") or b"") + len(record.get("response") or b"")
        if isinstance(shadow, dict):
            self.size += len(shadow.get("response") or b"")
        log = queue.config.api.payload_log
        self.pending.append((queue.key, log.max_bytes if log is not None else DEFAULT_MAX_BYTES, record))

    def take(self) -> list[tuple[str, int, dict[str, Any]]]:
        taken, self.pending = self.pending, []
        self.size = 0
        return taken
