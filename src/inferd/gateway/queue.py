"""One API's queue: idle replicas on a LIFO stack, waiting requests in one FIFO queue.

A request goes to an idle replica at once; when every replica is busy it waits, and a replica
that answers takes the next waiting request before it is marked idle again. There is no Task,
Future or thread per request: the waiter object (the HTTP connection) is called back directly.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import Any, Protocol

from inferd.config.schema import ApiConfig
from inferd.gateway.metrics import ApiStats
from inferd.replica.handle import ReplicaHandle, ReplicaState


class QueuedRequest(Protocol):
    """A request waiting for a replica (an HTTP connection in practice)."""

    closed: bool
    sent_at: float

    def on_reply(self, handle: ReplicaHandle | None, status: int, body: bytes, meta: bytes) -> None: ...


class ApiQueue:
    """Replicas and waiting requests of one API; lives on the gateway's event loop."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.name = config.name
        self.endpoint = config.endpoint
        self.idle: list[ReplicaHandle] = []
        self.replicas: set[ReplicaHandle] = set()
        self.waiting: deque[tuple[QueuedRequest, bytes, bytes]] = deque()
        self.running = 0
        self.info: dict[str, Any] = {}
        self.error: str | None = None
        self.stats = ApiStats()

    @property
    def ready(self) -> bool:
        return any(h.state == ReplicaState.READY for h in self.replicas)

    @property
    def in_flight(self) -> int:
        """Requests queued or running: the autoscaling signal."""
        return self.running + len(self.waiting)

    def submit(self, request: QueuedRequest, kind: bytes, body: bytes) -> None:
        """Send to an idle replica now, or queue until one is free."""
        if self.idle:
            handle = self.idle.pop()
            self.running += 1
            request.sent_at = perf_counter()
            handle.send(kind, body, request)
        else:
            self.waiting.append((request, kind, body))

    def release(self, handle: ReplicaHandle) -> None:
        """``handle`` answered: give it the next waiting request, or mark it idle."""
        self.running -= 1
        if handle.state != ReplicaState.READY or handle not in self.replicas:
            return
        waiting = self.waiting
        while waiting:
            request, kind, body = waiting.popleft()
            if request.closed:  # the client left while queued: its slot is free
                continue
            self.running += 1
            request.sent_at = perf_counter()
            handle.send(kind, body, request)
            return
        self.idle.append(handle)

    def add(self, handle: ReplicaHandle) -> None:
        """A replica became ready: it serves from now on."""
        self.replicas.add(handle)
        self.error = None
        if not self.info:
            self.info = handle.info
        self.running += 1  # release() below takes it back
        self.release(handle)

    def remove(self, handle: ReplicaHandle) -> None:
        """A replica is gone or draining: no new request goes to it."""
        self.replicas.discard(handle)
        if handle in self.idle:
            self.idle.remove(handle)

    def fail_waiting(self, status: int, body: bytes) -> None:
        """Answer every queued request with an error (the API cannot serve them)."""
        while self.waiting:
            request, _, _ = self.waiting.popleft()
            if not request.closed:
                request.on_reply(None, status, body, b"")
