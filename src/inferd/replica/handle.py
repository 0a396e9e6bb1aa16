"""The gateway's view of one replica: an asyncio protocol on its end of the socketpair.

Runs on the gateway's event loop. ``send`` writes one request frame; the reply is handed to the
request's ``Waiter`` with no Future or Task in between. Lifecycle events (ready, failed to load,
gone) go to the ``ReplicaEvents`` given at construction (the engine).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, Protocol, cast

import orjson

from inferd import codec
from inferd.replica import messages


class ReplicaState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


class Waiter(Protocol):
    """Whoever sent a request: told the status and body of the reply (exactly once)."""

    def on_reply(self, handle: ReplicaHandle | None, status: int, body: bytes, meta: bytes) -> None: ...


class ReplicaEvents(Protocol):
    """Told about a replica's lifecycle; implemented by the engine."""

    def replica_ready(self, handle: ReplicaHandle) -> None: ...

    def replica_failed(self, handle: ReplicaHandle, error: str, detail: str) -> None: ...

    def replica_closed(self, handle: ReplicaHandle) -> None: ...


CRASHED = codec.error_body("the replica running this request stopped before answering; retry it")


class ReplicaHandle(asyncio.Protocol):
    """One replica process as the gateway sees it: idle or busy with one request."""

    def __init__(self, api: str, replica_id: str, version: str, events: ReplicaEvents) -> None:
        self.api = api
        self.replica_id = replica_id
        self.version = version
        self.events = events
        self.state = ReplicaState.STARTING
        self.info: dict[str, Any] = {}
        self.waiter: Waiter | None = None
        self.requests = 0
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._retiring = False

    def __repr__(self) -> str:
        return f"<replica {self.api}/{self.replica_id} {self.state}>"

    @property
    def busy(self) -> bool:
        return self.waiter is not None

    def send(self, kind: bytes, body: bytes, waiter: Waiter) -> None:
        """Send one request; ``waiter.on_reply`` is called when the replica answers or dies."""
        assert self._transport is not None and self.waiter is None
        self.waiter = waiter
        self.requests += 1
        self._transport.writelines((messages.LENGTH.pack(len(body) + 1), kind, body))

    def close(self) -> None:
        """Close the gateway's end: the replica finishes its current request and exits."""
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        offset = 0
        end = len(data)
        while end - offset >= 4:
            (size,) = messages.LENGTH.unpack_from(data, offset)
            if end - offset - 4 < size:
                break
            kind = data[offset + 4 : offset + 5]
            start = offset + 5
            offset += 4 + size
            if kind == messages.REPLY:
                status = (data[start] << 8) | data[start + 1]
                meta_end = start + 4 + ((data[start + 2] << 8) | data[start + 3])
                self._reply(status, data[meta_end:offset], data[start + 4 : meta_end])
            else:
                self._lifecycle(kind, data[start:offset])
        if offset < end:
            buffer += data[offset:]

    def _reply(self, status: int, body: bytes, meta: bytes) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None:
            waiter.on_reply(self, status, body, meta)
        if self._retiring:
            self.close()

    def close_when_idle(self) -> None:
        """Close once the request it is running (if any) has been answered."""
        if self.waiter is None:
            self.close()
        else:
            self._retiring = True

    def _lifecycle(self, kind: bytes, payload: bytes) -> None:
        info = orjson.loads(payload) if payload else {}
        if kind == messages.READY:
            self.info = info
            self.state = ReplicaState.READY
            self.events.replica_ready(self)
        elif kind == messages.FAILED:
            self.state = ReplicaState.FAILED
            self.events.replica_failed(self, str(info.get("error", "")), str(info.get("detail", "")))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != ReplicaState.FAILED:
            self.state = ReplicaState.CLOSED
        self._transport = None
        waiter = self.waiter
        self.waiter = None
        if waiter is not None:
            waiter.on_reply(self, 503, CRASHED, b"")
        self.events.replica_closed(self)
