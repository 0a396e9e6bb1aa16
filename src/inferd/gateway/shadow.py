"""Shadow traffic: a copy of a share of an API's (or a splitter's) requests goes to another API.

The copy is made after the primary has answered its client, on a later turn of the event loop,
so the client waits for nothing of the shadow. Copies are sent in groups (up to ``GROUP``, or
after ``HOLD``): each costs the gateway and the shadow's replica a share of one write and one
wake-up instead of its own. In the shadow API's queue a copy waits in its own
line (``ApiQueue.copies``): a replica takes a copy only when no request of the shadow API's own
is waiting, and a copy is dropped, and counted, when the shadow's queue is full (its own waiting
requests and copies reach ``max_queue_length``), when the shadow API does not exist or cannot
serve, or when the copy is of a protocol it does not speak. The shadow's answer is never
returned: it goes into the primary API's payload log, in the primary's record under ``shadow``,
whether or not the primary has a ``payload_log`` of its own (a shadow exists to be compared).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from random import random
from time import perf_counter
from typing import TYPE_CHECKING, Any

from inferd.config.blocks import Shadow
from inferd.gateway.metrics import SHADOW  # the protocol label of copies in the shadow API's metrics
from inferd.gateway.payloads import PayloadBuffer, add_bodies, head_of, version_of
from inferd.gateway.stream import ItemRecord
from inferd.gateway.wire import REPLAY
from inferd.replica import messages

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.queue import ApiQueue
    from inferd.gateway.stream import Stream
    from inferd.replica.handle import ReplicaHandle

# Copies are held until GROUP of them wait or the oldest has waited HOLD seconds, then sent
# together: a fast shadow takes them in one write and answers in one (gateway/queue.py's
# pipelining), so a copy costs the gateway and the shadow's replica a fraction of a request.
GROUP = 8
HOLD = 0.005
# The protocol whose answers start with the model (API) that gave them: V2 infer.
NAMED_PROTOCOL = "v2"
NAMED = b'{"model_name":'
VERSION_FIELD = b',"model_version":"'


def unnamed(answer: bytes) -> bytes:
    """A V2 answer without the ``model_name`` and ``model_version`` it starts with (they name the
    API that answered, so a shadow's answer is compared without them); other answers as they are."""
    if not answer.startswith(NAMED):
        return answer
    at = answer.find(VERSION_FIELD)
    end = answer.find(b'"', at + len(VERSION_FIELD)) if at > 0 else -1
    return answer[end + 1 :] if end > 0 else answer


class ShadowRoute:
    """One ``shadow:`` (of an API or a splitter): where copies go, and what became of them."""

    __slots__ = ("agreed", "answered", "dropped", "errors", "percent", "sent", "source", "target")

    def __init__(self, source: str, target: str, percent: float) -> None:
        self.source = source  # ``deployment/name`` of the API or splitter that is shadowed
        self.target = target  # ``deployment/api`` that gets the copies
        self.percent = percent
        self.sent = 0  # copies admitted into the shadow's queue
        self.dropped = 0  # copies refused (queue full, shadow missing or not serving)
        self.answered = 0  # copies the shadow answered (any status)
        self.agreed = 0  # ... with the same status and the same bytes as the primary
        self.errors = 0  # ... with an error status (4XX, 5XX) where the primary's was not that

    def describe(self) -> dict[str, Any]:
        return {
            "api": self.target.partition("/")[2],
            "percent": self.percent,
            "sent": self.sent,
            "dropped": self.dropped,
            "answered": self.answered,
            "agreed": self.agreed,
            "errors": self.errors,
        }


class ShadowCopy:
    """One copied request: waits in the shadow API's queue like a client connection would."""

    __slots__ = (
        "body",
        "closed",
        "items",
        "kind",
        "primary",
        "protocol",
        "record",
        "replica_id",
        "route",
        "sampled",
        "sent_at",
        "shadows",
        "started",
        "stream",
        "streamed",
        "trace",
    )

    def __init__(
        self, shadows: Shadows, route: ShadowRoute, kind: bytes, body: bytes, protocol: str, sampled: bool
    ) -> None:
        self.shadows = shadows
        self.route = route
        self.kind = messages.PREDICT if kind == messages.PREDICT_DEBUG else kind
        self.body = body
        self.protocol = protocol
        self.sampled = sampled  # the primary's payload_log keeps this request anyway
        self.closed = False
        self.started = self.sent_at = 0.0
        self.replica_id = ""
        self.stream: Stream | None = None
        self.trace = b""  # the primary's traceparent: the shadow's handlers see the same trace
        self.items = ItemRecord()  # of a streamed answer: the first MiB, as the primary's record keeps
        self.streamed = False
        self.primary: ApiQueue | None = None
        self.record: dict[str, Any] = {}

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None:
        self.items.add(payload)
        self.streamed = True

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None:
        if self.streamed and status == 200 and not body:  # a streamed answer: its items as a list
            body = self.items.body()
        self.shadows.answered(self, status, body, meta)


class Shadows:
    """Every shadow route of the gateway, and the copies they make."""

    def __init__(self, apis: Mapping[str, ApiQueue], payloads: PayloadBuffer) -> None:
        self.apis = apis
        self.payloads = payloads
        self.routes: dict[str, ShadowRoute] = {}
        self.pending: list[tuple[ShadowCopy, bytes]] = []  # copies (and primary answers) to send
        self._timer: asyncio.TimerHandle | None = None
        self.draining = False
        # What ``inferd replay``'s requests carry in ``X-Inferd-Replay`` (``wire.replay_mark``, set
        # by the operator); b"": no request is taken for a replay (``inferd serve``).
        self.replay_mark = b""

    def route(self, source: str, deployment: str, config: Shadow | None) -> ShadowRoute | None:
        """The route of ``source`` for its (new) config; counts stay while the target does."""
        if config is None:
            self.routes.pop(source, None)
            return None
        target = f"{deployment}/{config.api}"
        route = self.routes.get(source)
        if route is None or route.target != target:
            route = self.routes[source] = ShadowRoute(source, target, config.percent)
        route.percent = config.percent
        return route

    def forget(self, source: str) -> None:
        self.routes.pop(source, None)

    def observe(
        self,
        conn: HttpConnection,
        queue: ApiQueue,
        route: ShadowRoute | None,
        kind: bytes,
        body: bytes,
        protocol: str,
    ) -> None:
        """Decide whether the request is recorded (payload_log) and copied (shadow)."""
        conn.copy = None
        replayed = conn.headers.get(REPLAY)
        if replayed is not None and self.replay_mark and hmac.compare_digest(replayed, self.replay_mark):
            conn.recording = None  # ``inferd replay``'s: not traffic to record or copy
            return
        sampled = bool(queue.sample) and random() < queue.sample
        # (a splitter's request that its shadow API answered is not copied to it again)
        if route is not None and route.target != queue.key and random() * 100 < route.percent:
            conn.copy = ShadowCopy(self, route, kind, body, protocol, sampled)
            conn.copy.trace = conn.trace
        conn.recording = body if sampled or conn.copy is not None else None

    def follow(
        self,
        copy: ShadowCopy,
        queue: ApiQueue,
        conn: HttpConnection,
        request: bytes,
        status: int,
        answer: bytes,
    ) -> None:
        """The primary answered: the copy is sent, and the primary's record completed, only once
        the client has its answer (on a later turn of the loop; no body is parsed before). Copies
        wait for company (``GROUP``, ``HOLD``) and go together, in one write when the shadow is
        fast."""
        copy.primary = queue
        copy.record = head_of(queue, conn, status)
        pending = self.pending
        pending.append((copy, answer))
        if len(pending) == 1:
            self._timer = asyncio.get_running_loop().call_later(HOLD, self.flush)
        elif len(pending) == GROUP:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self.pending = self.pending, []
        by_target: dict[str, list[tuple[ShadowCopy, bytes]]] = {}
        for copy, answer in pending:
            by_target.setdefault(copy.route.target, []).append((copy, answer))
        now = perf_counter()
        for key, copies in by_target.items():
            target = self.apis.get(key)
            admitted: list[tuple[ShadowCopy, bytes]] = []
            for copy, answer in copies:
                if target is None or self.draining or not self._serves(target, copy):
                    self._drop(copy, answer)
                else:
                    copy.started = copy.sent_at = now
                    admitted.append((copy, answer))
            if target is None or not admitted:
                continue
            taken = target.submit_copies([(copy, copy.kind, copy.body) for copy, _ in admitted])
            for copy, answer in admitted[:taken]:
                copy.route.sent += 1
                if copy.primary is not None:  # parsed while the shadow works
                    add_bodies(copy.primary, copy.record, copy.body, answer)
            for copy, answer in admitted[taken:]:  # the shadow's queue is full
                self._drop(copy, answer)

    @staticmethod
    def _serves(target: ApiQueue, copy: ShadowCopy) -> bool:
        """The shadow API can take this copy now (else it is dropped, not queued)."""
        if target.error is not None and not target.ready:
            return False
        if len(copy.body) > target.body_limit:
            return False
        return target.tensors or copy.protocol == "cortex" or copy.protocol.startswith("generate")

    def _drop(self, copy: ShadowCopy, answer: bytes) -> None:
        copy.route.dropped += 1
        if copy.sampled and copy.primary is not None:  # the primary's own payload log keeps it
            self.payloads.put(copy.primary, add_bodies(copy.primary, copy.record, copy.body, answer))

    def answered(self, copy: ShadowCopy, status: int, body: bytes, meta: bytes) -> None:
        """The shadow answered: its answer joins the primary's record (never the client), and
        the shadow API's metrics count it (protocol ``shadow``)."""
        route = copy.route
        if not copy.replica_id:
            # No replica took it: the gateway answered it, as the shadow stopped serving (its
            # replicas crash-looping) or the copy fell behind past its timeout. Dropped, as a copy
            # the shadow cannot take is: no answer of the shadow's model to compare.
            route.dropped += 1
            if copy.sampled and copy.primary is not None:  # the primary's own payload log keeps it
                self.payloads.put(copy.primary, copy.record)
            return
        route.answered += 1
        record = copy.record
        agrees = False
        if status == record["status"]:
            primary = record["response"]
            if copy.protocol == NAMED_PROTOCOL:  # the answers name the API that gave them
                body_compared, primary = unnamed(body), unnamed(primary)
            else:
                body_compared = body
            agrees = body_compared == primary  # the same bytes
            if agrees:
                route.agreed += 1
        elif status >= 400:  # the shadow failed where the primary did not (as replay counts errors)
            route.errors += 1
        target = self.apis.get(route.target)
        now = perf_counter()
        if target is not None:
            target.stats.add(SHADOW, status, now, now - copy.started, copy.sent_at - copy.started, meta)
        record["shadow"] = {
            "api": route.target,
            "version": version_of(target, copy.replica_id) if target is not None else "",
            "status": status,
            "latency_ms": round((now - copy.started) * 1000, 3),
            "response": body,  # parsed by the writer
            "agrees": agrees,  # counted in ``agreed``: the dashboard shows this verdict, not its own
        }
        if copy.primary is not None:
            self.payloads.put(copy.primary, record)

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each shadowed API or splitter (``deployment/name``): its shadow and counts."""
        return {source: route.describe() for source, route in self.routes.items()}


def families(shadows: Shadows, counter: Any) -> list[Any]:
    """The Prometheus counters of copies sent and dropped, per shadowed API or splitter."""
    labels = ["deployment", "source", "shadow"]
    sent = counter(
        "inferd_shadow_sent", "Copies of requests admitted into a shadow API's queue.", labels=labels
    )
    dropped = counter(
        "inferd_shadow_dropped",
        "Copies of requests dropped: the shadow's queue was full, or it could not serve.",
        labels=labels,
    )
    for source, route in sorted(shadows.routes.items()):
        deployment, _, name = source.partition("/")
        ids = [deployment, name, route.target.partition("/")[2]]
        sent.add_metric(ids, route.sent)
        dropped.add_metric(ids, route.dropped)
    return [sent, dropped]
