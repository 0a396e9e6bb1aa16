"""The gateway's view of one replica: an asyncio protocol on its end of the socketpair.

Runs on the gateway's event loop. ``send`` writes one request frame (``send_batch`` several
requests in one frame); the answers go to the ``ReplicaOwner`` (the API's queue), which hands
the replica its next work and each answer to its waiter, with no Future or Task in between.
Lifecycle events (ready, failed to load, gone, stuck) go to the ``ReplicaEvents`` given at
construction (the engine).
"""

from __future__ import annotations

import asyncio
import enum
import os
from time import perf_counter
from typing import Any, Protocol, cast

import orjson

from inferd import codec
from inferd.replica import messages


def traced(trace: bytes) -> bytes:
    """The ``TRACE`` frame that goes before a request with this ``traceparent``."""
    return messages.frame(messages.TRACE, trace)


class ReplicaState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


class Waiter(Protocol):
    """Whoever sent a request: told the status, body and metadata of its answer (once)."""

    trace: bytes  # the request's ``traceparent`` value (b"": none), sent in a TRACE frame before it

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None: ...

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None:
        """One item of a streamed answer (the ``END`` comes as ``on_reply``)."""
        ...


Answer = tuple[Waiter, int, bytes, bytes]


class ReplicaOwner(Protocol):
    """Who dispatches work to the replica (an API's queue): told when it answered.

    ``answers`` are in the order the requests were sent; the handle's ``waiters`` hold the
    requests still running on it (none: it is free for more work).
    """

    def replica_answered(self, handle: ReplicaHandle, answers: list[Answer]) -> None: ...


class ReplicaEvents(Protocol):
    """Told about a replica's lifecycle; implemented by the engine."""

    def replica_ready(self, handle: ReplicaHandle) -> None: ...

    def replica_failed(self, handle: ReplicaHandle, error: str, detail: str) -> None: ...

    def replica_closed(self, handle: ReplicaHandle) -> None: ...

    def replica_lost_because(self, handle: ReplicaHandle) -> str | None:
        """Why the replica's connection closed, when the engine ended it for a reason the
        requests it was running should hear (it used more than ``compute.mem_limit``)."""
        ...

    def replica_stuck(self, handle: ReplicaHandle) -> None:
        """The replica overran a request's deadline and was abandoned: stop its process."""
        ...


STOP_FRAME = messages.frame(messages.STOP, b"")
CRASHED = codec.error_body("the replica running this request stopped before answering; retry it")


class ReplicaHandle(asyncio.Protocol):
    """One replica process as the gateway sees it: idle, or busy with one request or batch."""

    def __init__(
        self, api: str, replica_id: str, version: str, events: ReplicaEvents, greeting: bytes = b""
    ) -> None:
        self.api = api
        self.greeting = greeting
        self.replica_id = replica_id
        self.version = version
        self.events = events
        self.owner: ReplicaOwner | None = None
        self.state = ReplicaState.STARTING
        self.info: dict[str, Any] = {}
        self.waiters: list[Waiter] = []
        self.requests = 0
        self._transport: asyncio.Transport | None = None
        self._fd = -1  # the socket's descriptor, while connected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray()
        self._needed = 0  # bytes the buffer must hold before its first frame is complete
        self._retiring = False
        # Whether several requests may be written to it at once (its answers never stream).
        self.pipeline = False

    def __repr__(self) -> str:
        return f"<replica {self.api}/{self.replica_id} {self.state}>"

    @property
    def busy(self) -> bool:
        return bool(self.waiters)

    def send(self, kind: bytes, body: bytes, waiter: Waiter, spin: bytes = b"") -> None:
        """Send one request; its answer goes to the owner (or straight to ``waiter``). ``spin``:
        a ``SPIN`` frame to go before it (replica/spinning.py)."""
        assert self._transport is not None and not self.waiters
        self.waiters = [waiter]
        self.requests += 1
        trace = waiter.trace
        if trace:
            self._transport.writelines((spin, traced(trace), messages.LENGTH.pack(len(body) + 1), kind, body))
        else:
            self._transport.writelines((spin, messages.LENGTH.pack(len(body) + 1), kind, body))

    def spin_soon(self, until: float) -> None:
        """Once the event loop has run what is ready, wait for the answer spinning until ``until``."""
        if self._loop is not None:
            self._loop.call_soon(self.spin_for_answer, until)

    def spin_for_answer(self, until: float) -> None:
        """Read the replica's answer without blocking, spinning until it came or ``until`` (when
        the gateway runs nothing else: gateway/queue.py, replica/spinning.py); an answer not
        there by then comes the usual way, when the event loop sees the socket readable.
        Called from the event loop: no other callback runs meanwhile, so the bytes read here
        are the next ones and go to ``data_received`` in order. Never while reading is paused
        (a stream whose client stopped reading: the replica's send must block, as it would)."""
        while (
            self._fd >= 0
            and (transport := self._transport) is not None
            and self.waiters
            and transport.is_reading()
        ):
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                if perf_counter() >= until:
                    return
                os.sched_yield()
                continue
            except OSError:  # the replica is gone: the event loop sees it too
                return
            if not data:
                return
            self.data_received(data)

    def send_group(self, kinds: list[bytes], bodies: list[bytes], waiters: list[Waiter]) -> None:
        """Send several requests in one write; the replica answers them in order."""
        assert self._transport is not None and not self.waiters
        self.waiters = waiters
        self.requests += len(bodies)
        pack = messages.LENGTH.pack
        parts: list[bytes] = []
        for kind, body, waiter in zip(kinds, bodies, waiters, strict=True):
            if waiter.trace:
                parts.append(traced(waiter.trace))
            parts += (pack(len(body) + 1), kind, body)
        self._transport.writelines(parts)

    def send_batch(self, bodies: list[bytes], waiters: list[Waiter]) -> None:
        """Send several Cortex-style requests as one ``BATCH`` frame (one model call)."""
        assert self._transport is not None and not self.waiters
        self.waiters = waiters
        self.requests += len(bodies)
        self._transport.writelines(messages.batch_frame(bodies))

    def stop(self) -> None:
        """Ask the replica to close the stream it is sending (the client left)."""
        if self._transport is not None:
            self._transport.write(STOP_FRAME)

    def pause_reading(self) -> None:
        """Stop reading the replica's answers (its sends block: backpressure for a stream)."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def close(self) -> None:
        """Close the gateway's end: the replica finishes its current request and exits."""
        if self._transport is not None:
            self._transport.close()

    def close_when_idle(self) -> None:
        """Close once the work it is running (if any) has been answered."""
        if not self.waiters:
            self.close()
        else:
            self._retiring = True

    def abandon(self) -> list[Waiter]:
        """Give up on a replica that overran a deadline: its waiters (to answer), process stopped."""
        waiters, self.waiters = self.waiters, []
        self.owner = None
        self.events.replica_stuck(self)
        self.close()
        return waiters

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        self._fd = -1 if sock is None else sock.fileno()  # non-blocking (the event loop's)
        self._loop = asyncio.get_running_loop()
        if self.greeting:
            self._transport.write(self.greeting)  # the replica's spec, before anything else
            self.greeting = b""

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._needed:  # a large frame still arriving: parsed once it is whole
                return
            data = bytes(buffer)
            buffer.clear()
        offset = 0
        end = len(data)
        answers: list[Answer] = []
        needed = 4
        while end - offset >= 4:
            (size,) = messages.LENGTH.unpack_from(data, offset)
            if end - offset - 4 < size:
                needed = 4 + size
                break
            kind = data[offset + 4 : offset + 5]
            start = offset + 5
            offset += 4 + size
            if kind == messages.REPLY or kind == messages.END:
                status = (data[start] << 8) | data[start + 1]
                meta_end = start + 4 + ((data[start + 2] << 8) | data[start + 3])
                if self.waiters:
                    waiter = self.waiters.pop(0)
                    answers.append((waiter, status, data[meta_end:offset], data[start + 4 : meta_end]))
            elif kind == messages.CHUNK:
                if self.waiters:
                    self.pipeline = False  # this API streams: a stream would hold up those behind it
                    self.waiters[0].on_chunk(self, data[start:offset])
            elif kind == messages.BATCH_REPLY:
                waiters, self.waiters = self.waiters, []
                replies = messages.parse_batch_reply(data[start:offset])
                answers += [(w, *reply) for w, reply in zip(waiters, replies, strict=False)]
            else:
                self._lifecycle(kind, data[start:offset])
        if offset < end:
            buffer += memoryview(data)[offset:]
            self._needed = needed
        if answers:
            self._deliver(answers)

    def _deliver(self, answers: list[Answer]) -> None:
        owner = self.owner
        if owner is not None:
            owner.replica_answered(self, answers)
        else:
            for waiter, status, body, meta in answers:
                waiter.on_reply(status, body, meta)
        if self._retiring and not self.waiters:
            self.close()

    def _lifecycle(self, kind: bytes, payload: bytes) -> None:
        info = orjson.loads(payload) if payload else {}
        if kind == messages.READY:
            self.pipeline = bool(info.pop("pipeline", False))
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
        self._fd = -1
        waiters, self.waiters = self.waiters, []
        if waiters:
            why = self.events.replica_lost_because(self)
            answer = (500, codec.error_body(why)) if why else (503, CRASHED)
            self._deliver([(waiter, *answer, b"") for waiter in waiters])
        self.events.replica_closed(self)
