"""One API's queue: idle replicas on a LIFO stack, waiting requests in one FIFO queue.

A request goes to an idle replica at once; when every replica is busy it waits, and a replica
that answers takes the next waiting work before it is marked idle again. With ``batching``, a
replica that frees up takes up to ``max_batch_size`` waiting Cortex-style requests as one model
call (an idle replica still takes a lone request at once: no added latency at low load; with
``batch_interval`` a partial batch waits that long for company, and newcomers queue behind it
so batches form oldest first). There
is no Task, Future or thread per request: waiters (HTTP connections) are called back directly.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import deque
from collections.abc import Sequence, Sized
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from inferd import codec
from inferd.cgroup_limits import machine_cpus
from inferd.config.schema import ApiConfig
from inferd.gateway import deadlines
from inferd.gateway.metrics import ApiStats
from inferd.gateway.waiting import Waiting
from inferd.replica import messages, spinning
from inferd.replica.handle import Answer, ReplicaHandle, ReplicaState

if TYPE_CHECKING:
    from inferd.gateway.shadow import ShadowRoute
    from inferd.gateway.stream import Stream


class QueuedRequest(Protocol):
    """A request waiting for a replica (an HTTP connection in practice)."""

    closed: bool
    started: float
    sent_at: float
    replica_id: str
    stream: Stream | None  # set while its answer streams
    trace: bytes  # its traceparent (b"": none)

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None: ...

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None: ...


Entry = tuple[QueuedRequest, bytes, bytes]  # request, frame kind, body


def _setting(name: str, default: float) -> float:
    """A number from 0 up in the environment variable ``name``, else ``default``."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if 0 <= value < math.inf else default


# Pipelining: at most this many requests written to one replica at once, and only while the
# API's replicas answer in under FAST seconds each (an answer waits for the group's others).
# ``INFERD_PIPELINE=1`` turns it off; ``INFERD_PIPELINE_BELOW_MS`` moves the "fast" line (1 ms).
PIPELINE = int(_setting("INFERD_PIPELINE", 8))
FAST = _setting("INFERD_PIPELINE_BELOW_MS", 1) / 1000

# Spinning (replica/spinning.py): while the gateway is quiet (at most a quarter of the machine's
# cores in requests running and in client connections open, those silent for a second or more
# aside: one of each on 2 or 4 cores), a request goes with a ``SPIN`` frame, and its replica
# spins on its socket for up to ``INFERD_SPIN_US`` microseconds (200) after answering, so that
# the next request finds it awake; with one client connection the gateway spins for the answer
# too (up to three times the API's time per request). 0 turns both off.
SPIN_US = int(min(_setting("INFERD_SPIN_US", 200), 100_000))  # at most 0.1 s
SPIN_LIMIT = SPIN_US / 1e6
SPIN = messages.frame(messages.SPIN, spinning.LIMIT.pack(SPIN_US)) if SPIN_US else b""


def alone() -> int:
    """Requests running and client connections open (each) while the gateway counts as quiet: a
    quarter of the cores, those of the container's CPU quota in a container (at least 1)."""
    return max(1, int(machine_cpus() // 4))


ALONE = alone() if SPIN_US else -1


class ApiQueue:
    """Replicas and waiting requests of one API; lives on the gateway's event loop."""

    running_all = 0  # requests (and shadow copies) running on the replicas of every API
    clients: Sized = ()  # the gateway's open client connections (set by gateway.app)
    dormant = 0  # of those, kept alive with no request for a while (edge.dormant): not counted

    def __init__(self, config: ApiConfig) -> None:
        self.stats = ApiStats()
        self.configure(config)
        self.idle: list[ReplicaHandle] = []
        self.replicas: set[ReplicaHandle] = set()
        self.busy: dict[ReplicaHandle, list[QueuedRequest]] = {}
        self.waiting = Waiting()  # their bodies counted for --max-body-buffer (gateway/waiting.py)
        # Shadow copies of another API's requests (gateway/shadow.py): a replica takes one only
        # when no request of this API waits.
        self.copies = Waiting()
        self.copying: set[ReplicaHandle] = set()  # the replicas running copies (not requests)
        self.running = 0
        self.arrivals = 0  # requests and copies submitted so far (the autoscaler's "not idle")
        self.info: dict[str, Any] = {}
        self.error: str | None = None
        self.status: str | None = None  # the engine's status of the API (as ``inferd get``)
        self.keys: list[bytes] = []
        self.auth_error: str | None = None
        self.batch_sizes: dict[int, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Seconds a replica takes per request (smoothed): requests are pipelined only when short.
        self.service = 1.0
        self.pipelined = 0  # requests written behind another in one write

    def configure(self, config: ApiConfig) -> None:
        """Take a (new) config; what the hot path reads is copied into plain attributes."""
        self.config = config
        self.key = config.key  # ``deployment/api``: unique on a gateway
        self.api_name = config.name
        self.deployment = config.deployment
        # In messages: the bare name, or the key while another deployment has an API of that name
        # (kept up to date by ``Gateway``).
        self.name = config.name
        self.model_name = f"{config.deployment}.{config.name}"  # the V2 / TF Serving name that never clashes
        self.endpoint = config.endpoint
        api = config.api
        self.body_limit = api.body_limit
        self.max_queue_length = api.max_queue_length
        self.batching = api.batching
        # A Python predictor has no tensor signature: it speaks only the Cortex-style route.
        self.tensors = api.predictor is None
        # payload_log: the fraction of requests recorded (0.0: none; see gateway/payloads.py)
        self.sample = api.payload_log.sample if api.payload_log is not None else 0.0
        # shadow: where copies of its requests go (set by the gateway, which keeps the counts)
        self.shadow: ShadowRoute | None = None
        self.observed = bool(self.sample)  # payload_log or shadow: ``Shadows.observe`` decides
        self.tracker_type = api.tracker.model_type if api.tracker is not None else ""
        self.stats.track(self.tracker_type, api.tracker.key if api.tracker is not None else None)

    @property
    def ready(self) -> bool:
        return any(h.state == ReplicaState.READY for h in self.replicas)

    @property
    def serving(self) -> bool:
        """Requests are answered: a ready replica, or live with none (scaled to zero)."""
        return self.ready or self.status == "live"

    @property
    def in_flight(self) -> int:
        """Requests queued or running, shadow copies included (``inferd get``, /metrics, drains)."""
        return self.running + len(self.waiting) + len(self.copies)

    @property
    def load(self) -> int:
        """The autoscaling signal: ``in_flight``, but a group of shadow copies (``_send_group``) is
        one replica's work (counted one by one, a shadow of one connection's traffic was scaled to
        4 replicas); copies that go one at a time (``_next``) count one by one."""
        copies = len(self.copies)
        grouped = PIPELINE > 1 and self.batching is None and self.service < FAST
        if copies > 1 and grouped and (not self.replicas or any(h.pipeline for h in self.replicas)):
            copies = -(-copies // PIPELINE)
        running = self.running
        for handle in self.copying:
            running -= len(self.busy.get(handle, ())) - 1
        return running + len(self.waiting) + copies

    @property
    def full(self) -> bool:
        """No idle replica and ``max_queue_length`` requests already waiting."""
        if self.idle or len(self.waiting) < self.max_queue_length:
            return False
        kept = Waiting(entry for entry in self.waiting if not entry[0].closed)
        self.waiting.clear()  # counted out; ``kept`` counted in
        self.waiting = kept
        return len(self.waiting) >= self.max_queue_length

    def submit(self, request: QueuedRequest, kind: bytes, body: bytes) -> None:
        """Send to an idle replica now, or queue until one is free.

        With batching, a replica may be idle while older requests wait for company: the newcomer
        then joins them (oldest first) and a full batch goes at once.
        """
        self.arrivals += 1
        waiting = self.waiting
        if self.idle and not waiting:
            self._send(self.idle.pop(), [request], kind, [body])
            return
        waiting.append((request, kind, body))
        if self.idle and self.batching is not None and len(waiting) >= self.batching.max_batch_size:
            self._next(self.idle.pop(), flush=True)

    def submit_copies(self, entries: Sequence[Entry]) -> int:
        """Shadow copies: queued behind this API's own requests, then taken by the idle replicas.
        Those beyond the queue's room are refused; returns how many (the first ones) were taken."""
        room = self.max_queue_length - len(self.waiting) - len(self.copies)
        if not self.waiting:
            room += len(self.idle)  # an idle replica takes a copy at once
        taken = entries[: max(0, room)]
        self.arrivals += len(taken)
        self.copies.extend(taken)
        while self.copies and self.idle and not self.waiting:
            self._next(self.idle.pop())
        return len(taken)

    def _send(
        self,
        handle: ReplicaHandle,
        requests: list[QueuedRequest],
        kind: bytes,
        bodies: list[bytes],
        copies: bool = False,
    ) -> None:
        self._assign(handle, requests, copies)
        if len(bodies) == 1:
            clients = len(ApiQueue.clients) - ApiQueue.dormant
            quiet = ApiQueue.running_all <= ALONE and clients <= ALONE and not copies
            handle.send(kind, bodies[0], requests[0], SPIN if quiet else b"")
            if quiet and clients <= 1 and self.service < SPIN_LIMIT:  # the gateway spins too
                handle.spin_soon(perf_counter() + min(SPIN_LIMIT, 3 * self.service))
        else:
            handle.send_batch(bodies, list(requests))
        if self.batching is not None:
            self.batch_sizes[len(bodies)] = self.batch_sizes.get(len(bodies), 0) + 1

    def replica_answered(self, handle: ReplicaHandle, answers: list[Answer]) -> None:
        """``handle`` answered: once it is free, give it its next work first; then answer the clients."""
        self.running -= len(answers)
        ApiQueue.running_all -= len(answers)
        if handle.waiters:  # the first answers of a pipelined group: the rest are running
            self.busy[handle] = self.busy[handle][len(answers) :]
        else:
            done = self.busy.pop(handle, None)
            self.copying.discard(handle)
            if done:  # the replica's time per request, smoothed
                each = (perf_counter() - done[0].sent_at) / len(done)
                self.service += (each - self.service) * 0.25
            self._next(handle)
        for waiter, status, body, meta in answers:
            waiter.on_reply(status, body, meta)

    def _next(self, handle: ReplicaHandle, flush: bool = False) -> None:
        """Give ``handle`` its next work, or keep it idle (``flush``: send a partial batch now)."""
        if handle.state != ReplicaState.READY or handle not in self.replicas:
            return
        waiting = self.waiting
        while waiting and waiting[0][0].closed:  # clients that left while queued free their slot
            waiting.popleft()
        if not waiting:
            copies = self.copies
            if copies:  # nothing of this API's own waits: shadow copies may go (pipelined too)
                if len(copies) > 1 and handle.pipeline and self.batching is None and PIPELINE > 1:
                    self._send_group(handle, copies)
                    return
                request, kind, body = copies.popleft()
                self._send(handle, [request], kind, [body], copies=True)
                return
            self.idle.append(handle)
            return
        batching = self.batching
        if batching is None or waiting[0][1] != messages.PREDICT:
            if len(waiting) > 1 and handle.pipeline and batching is None and PIPELINE > 1:
                self._send_group(handle)
                return
            request, kind, body = waiting.popleft()
            self._send(handle, [request], kind, [body])
            return
        if not flush and len(waiting) < batching.max_batch_size and batching.batch_interval > 0:
            wait = waiting[0][0].started + batching.batch_interval - perf_counter()
            if wait > 0:  # a partial batch may wait a little for more requests
                self.idle.append(handle)
                self._schedule(wait)
                return
        self._send_batch(handle, batching.max_batch_size)

    def _send_group(self, handle: ReplicaHandle, line: deque[Entry] | None = None) -> None:
        """Several waiting requests in one write to a busy API's replica (each its own model call).

        Every replica is busy (else nothing would wait), so the waiting requests are shared out
        among the replicas: up to ``PIPELINE`` each, in arrival order. The replica answers them in
        order and sends their answers together: one write and one read per group on each side
        instead of per request. Only for APIs whose answers are fast, so that an answer never
        waits long for those computed after it.
        """
        waiting = self.waiting if line is None else line  # this API's requests, or shadow copies
        # A client waits for each request: they are shared out. Nobody waits for a copy: copies
        # go to as few replicas as can take them (each write wakes a replica up).
        share = -(-len(waiting) // max(1, len(self.replicas))) if line is None else len(waiting)
        count = min(PIPELINE, share) if self.service < FAST else 1
        requests: list[QueuedRequest] = []
        kinds: list[bytes] = []
        bodies: list[bytes] = []
        while waiting and len(requests) < count:
            request, kind, body = waiting.popleft()
            if not request.closed:
                requests.append(request)
                kinds.append(kind)
                bodies.append(body)
        if not requests:
            self._next(handle)
            return
        self.pipelined += len(requests) - 1
        self._assign(handle, requests, line is not None)
        handle.send_group(kinds, bodies, list(requests))

    def _assign(self, handle: ReplicaHandle, requests: list[QueuedRequest], copies: bool = False) -> None:
        """``requests`` (shadow ``copies``) run on ``handle`` from now on."""
        now = perf_counter()
        replica_id = handle.replica_id
        for request in requests:
            request.sent_at = now
            request.replica_id = replica_id
        self.running += len(requests)
        ApiQueue.running_all += len(requests)
        self.busy[handle] = requests
        if copies:
            self.copying.add(handle)

    def _send_batch(self, handle: ReplicaHandle, limit: int) -> None:
        requests: list[QueuedRequest] = []
        bodies: list[bytes] = []
        waiting = self.waiting
        while waiting and len(requests) < limit and waiting[0][1] == messages.PREDICT:
            request, _, body = waiting.popleft()
            if not request.closed:
                requests.append(request)
                bodies.append(body)
        if requests:
            self._send(handle, requests, messages.PREDICT, bodies)
        else:
            self._next(handle)

    def _schedule(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._flush_partial)

    def _flush_partial(self) -> None:
        self._timer = None
        while self.waiting and self.idle:
            self._next(self.idle.pop(), flush=True)

    def add(self, handle: ReplicaHandle) -> None:
        """A replica became ready: it serves from now on."""
        self.replicas.add(handle)
        handle.owner = self
        self.error = None
        if not self.info:
            self.info = handle.info
        self._next(handle)

    def remove(self, handle: ReplicaHandle) -> None:
        """A replica is gone or draining: no new request goes to it."""
        self.replicas.discard(handle)
        if handle in self.idle:
            self.idle.remove(handle)

    def withdraw(self, request: QueuedRequest) -> None:
        """``request``'s client left while it waited: it leaves the queue now, not when a replica
        would have taken it (an API still loading, or crash-looping, took none until its
        ``timeout``): its slot, its body's bytes and the in-flight count come back at once."""
        self.waiting.discard(request)

    def left(self, request: QueuedRequest) -> None:
        """``request``'s client left while it runs alone on its replica: the replica is told to
        stop now, so a generator is closed at its first item (a ``STOP`` after a plain answer is
        skipped by the replica). Also on a replica that has not streamed yet (``pipeline`` is
        still on): its first stream was otherwise stopped only at its second item."""
        for handle, requests in self.busy.items():
            if len(requests) == 1 and requests[0] is request:
                handle.stop()
                return

    def fail_waiting(self, status: int, body: bytes) -> None:
        """Answer every queued request (and shadow copy) with an error (the API cannot serve them)."""
        for waiting in (self.waiting, self.copies):
            while waiting:
                request, _, _ = waiting.popleft()
                if not request.closed:
                    request.on_reply(status, body, b"")

    def expire(self, now: float) -> None:
        """Answer 504 to requests past the API's timeout; abandon replicas stuck on one."""
        deadlines.expire(self, now)

    def abandon(self, handle: ReplicaHandle, requests: list[QueuedRequest], body: bytes | str) -> None:
        """Stop a replica stuck past a deadline (it is replaced); answer its requests 504."""
        if isinstance(body, str):
            body = codec.error_body(body)
        del self.busy[handle]
        self.copying.discard(handle)
        self.running -= len(requests)
        ApiQueue.running_all -= len(requests)
        self.remove(handle)
        for waiter in handle.abandon():
            waiter.on_reply(504, body, b"")
