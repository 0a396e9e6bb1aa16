"""The gateway: routes requests to API queues and answers the small routes itself.

It knows replicas only through ``ReplicaHandle`` and learns about them through the
``ReplicaSink`` methods an engine calls (``ApiTable``, its base, in ``gateway/apis.py``); it never
starts or stops a process. It listens and shuts down as ``gateway/lifecycle.py`` says; its clock
and timeouts are kept by ``gateway/sweeper.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any

import orjson

from inferd import codec
from inferd.errors import body_too_large
from inferd.gateway import auth, cortex, openapi, tfserving, v2
from inferd.gateway.access import AccessLog
from inferd.gateway.apis import endpoints_hint
from inferd.gateway.edge import EdgeLimits
from inferd.gateway.held import HeldAnswers
from inferd.gateway.http import HttpConnection
from inferd.gateway.lifecycle import GatewayLifecycle
from inferd.gateway.payloads import PayloadBuffer
from inferd.gateway.prometheus import EXPOSITION_TYPE, exposition
from inferd.gateway.queue import ApiQueue
from inferd.gateway.shadow import Shadows
from inferd.gateway.tracing import Tracer, client_span, traceparent
from inferd.gateway.traffic import splitter_endpoints
from inferd.gateway.wire import CORS, Request, debug_asked
from inferd.protocols import cortex as cortex_http
from inferd.replica import messages

log = logging.getLogger("inferd.gateway")

# Routes that are not an API's take no body worth reading.
SMALL_BODY_LIMIT = 64 * 1024
# A preflight's answer. ``*`` allows any header, as Cortex's ``Access-Control-Allow-Headers: *``
# did (a web page sending its own ``X-Client-Version`` header); Authorization is never covered by
# ``*``, so it (and the key header) are named beside it. A Ray replica answers the same.
ALLOW_CORS = b"".join(f"{name}: {value}\r\n".encode() for name, value in cortex_http.PREFLIGHT.items())
# The gateway's own routes: they answer GET (and HEAD), nothing else.
READ_ONLY = frozenset((b"/healthz", b"/metrics", b"/openapi.json", b"/docs", b"/"))


class Gateway(GatewayLifecycle):
    """HTTP front of every API: routes each request to its API's queue (``ApiTable``, which
    implements ``inferd.types.ReplicaSink``) and counts its answer; listens, drains and closes as
    ``GatewayLifecycle`` does."""

    common_headers = CORS  # browsers on any origin may call the APIs

    def __init__(
        self,
        access_log: AccessLog | None = None,
        metrics: bool = True,
        limits: EdgeLimits | None = None,
    ) -> None:
        super().__init__()
        self.limits = limits or EdgeLimits()
        # A coarse clock for connection timeouts, advanced by the sweeper (no clock call per request).
        self.clock = time.monotonic()
        self.access_log = access_log
        # Off only to measure what metrics cost (``inferd serve --no-metrics``).
        self.metrics = metrics
        # Replica counts by state per API, for /metrics; set by whoever runs the engine.
        self.replica_states: Callable[[], dict[str, dict[str, int]]] = lambda: {}
        # Each GPU replica's devices ({api, replica, uuid, index, utilization, memory_used,
        # memory_total}), for /metrics; empty on machines without GPUs.
        self.replica_gpus: Callable[[], list[dict[str, Any]]] = lambda: []
        # Sampled requests and answers of APIs with payload_log, until the operator writes them.
        self.payloads = PayloadBuffer()
        # Shadow routes (gateway/shadow.py): copies of requests to other APIs, answers recorded.
        self.shadows = Shadows(self.apis, self.payloads)
        # OpenTelemetry stage spans (gateway/tracing.py): only with the otel extra configured.
        self.tracer = Tracer.from_environment()
        self.connections: set[HttpConnection] = set()
        ApiQueue.clients = self.connections  # how quiet the gateway is (spinning: gateway/queue.py)
        ApiQueue.dormant = 0
        self.bodies_held = 0  # bytes of request bodies still arriving (limits.max_body_buffer)
        self.answers_held = HeldAnswers(self.limits.max_answer_buffer)
        self.draining = False
        self.started = time.time()

    # HTTP routing (called by connections)

    def handle(self, conn: HttpConnection, request: Request) -> None:
        path = request.path
        queue = self.endpoints.get(path)
        if queue is None and path.endswith(b"/") and len(path) > 1:
            queue = self.endpoints.get(path.rstrip(b"/"))
        if queue is None and self.splitters:
            queue = self._split(conn, path, request.method == b"POST")
        if queue is not None:
            method = request.method
            if method == b"OPTIONS":  # a CORS preflight carries no key
                conn.respond(204, b"", headers=ALLOW_CORS)
                return
            if not auth.authorized(self, conn, request.headers, queue, "cortex"):
                return
            given = request.headers.get(b"traceparent")
            if given is not None or self.tracer is not None:  # W3C Trace Context, returned
                self.trace(conn, given)
            if method == b"POST":
                debug = debug_asked(request.query)
                body = cortex.sample_body(request)
                self.dispatch(conn, queue, messages.PREDICT_DEBUG if debug else messages.PREDICT, body)
            elif method == b"GET" or method == b"HEAD":
                conn.respond(200, orjson.dumps(self.describe(queue)))
            else:
                self.method_not_allowed(conn, request, b"GET, HEAD, POST")
                self._count_refusal(conn, queue, path, 405, "cortex", not_allowed(request))  # as the edge's
            return
        if len(path) > 1 and path.endswith(b"/"):  # `/healthz/` as `/healthz`, as an API's endpoint
            path = path.rstrip(b"/") or b"/"
        if request.method == b"OPTIONS":
            conn.respond(204, b"", headers=ALLOW_CORS)
        elif path == b"/v2" or path.startswith(b"/v2/"):
            v2.route(self, conn, request)
        elif path == b"/v1/models" or path.startswith(b"/v1/models/"):
            tfserving.route(self, conn, request)
        elif request.method not in (b"GET", b"HEAD") and path in READ_ONLY:
            self.method_not_allowed(conn, request, b"GET, HEAD")
        elif path == b"/healthz":
            self._healthz(conn)
        elif path == b"/metrics":
            conn.respond(200, exposition(self), content_type=EXPOSITION_TYPE)
        elif path in (b"/openapi.json", b"/docs"):
            openapi.route(self, conn, request)
        elif path == b"/":
            listed = self.visible(request.headers)
            conn.respond(200, orjson.dumps({"apis": [self.describe(q, brief=True) for q in listed]}))
        elif cortex.signature(self, conn, request):
            pass
        else:
            shown = request.path.decode("utf-8", "replace")
            visible = self.visible(request.headers)
            known = endpoints_hint(shown, splitter_endpoints(self.splitters, visible))
            conn.respond(*self.not_found(f"no API at {shown} ({known})"))

    def dispatch(
        self, conn: HttpConnection, queue: ApiQueue, kind: bytes, body: bytes, protocol: str = "cortex"
    ) -> None:
        """Admit a request into ``queue`` (or refuse it at once when the API cannot serve)."""
        if self.draining:
            self.reject(conn, queue, 503, "the server is shutting down", protocol)
        elif not queue.tensors and protocol != "cortex" and not protocol.startswith("generate"):
            message = (
                f"api '{queue.name}' is a Python predictor: it answers JSON at POST {queue.endpoint}, "
                "not V2 or TF Serving tensors"
            )
            self.reject(conn, queue, 400, message, protocol)
        elif queue.error is not None and not queue.ready:
            self.reject(conn, queue, 503, f"api '{queue.name}' is not ready: {queue.error}", protocol)
        elif len(body) > queue.body_limit:
            self.reject(conn, queue, 413, body_too_large(queue.body_limit), protocol)
        elif queue.full:
            waiting = len(queue.waiting)
            self.reject(
                conn, queue, 503, f"api '{queue.name}' is overloaded ({waiting} requests waiting)", protocol
            )
        else:
            if queue.observed or conn.shadow is not None:  # payload_log, shadow: recorded, copied
                route = conn.shadow  # a splitter's; the API's own where it has none, or is the API
                if route is None or route.target == queue.key:
                    route = queue.shadow
                self.shadows.observe(conn, queue, route, kind, body, protocol)
            conn.submit(queue, kind, body, protocol)

    def admit(self, conn: HttpConnection, method: bytes, path: bytes, headers: dict[bytes, bytes]) -> int:
        """Called when a request's headers end: its body limit, or -1 once refused (a wrong key)."""
        queue = self.endpoints.get(path)
        protocol = "cortex"
        if queue is None:
            queue, protocol = self._protocol_route(path)
            if queue is None:
                if self.splitters:  # the APIs (and keys) are checked when the body is in
                    limit = self.splitters.body_limit_of(path, self.apis)
                    if limit is not None:
                        return limit
                length = headers.get(b"content-length", b"")
                if (
                    length.isdigit()
                    and int(length) > SMALL_BODY_LIMIT
                    and not conn.busy
                    and not conn.pipeline
                ):
                    # No API here, so no body is read: its route's answer (404, 405) is the one to
                    # give, not a 413 that would blame the size of a body sent to a mistyped name.
                    conn.answer_head(Request(method, path, b"", headers, b"", False))
                    return -1
                return SMALL_BODY_LIMIT
        if (
            queue.config.api.auth is not None
            and method != b"OPTIONS"
            and not conn.busy
            and not conn.pipeline
            and not auth.authorized(self, conn, headers, queue, protocol, early=True)
        ):
            return -1
        return queue.body_limit

    def routeless(self, path: bytes) -> bool:
        """No API reads a body sent to ``path`` (``admit`` gave it ``SMALL_BODY_LIMIT``)."""
        if path in self.endpoints or self._protocol_route(path)[0] is not None:
            return False
        return not self.splitters or self.splitters.body_limit_of(path, self.apis) is None

    def _protocol_route(self, path: bytes) -> tuple[ApiQueue | None, str]:
        """The API a V2, TF Serving or slash-ended path names (``None`` for other routes)."""
        if path.endswith(b"/") and len(path) > 1:
            queue = self.endpoints.get(path.rstrip(b"/"))
            if queue is not None:
                return queue, "cortex"
        if path.startswith(b"/v2/models/"):
            name = path[len(b"/v2/models/") :].split(b"/", 1)[0]
            return self.models.get(name.decode("utf-8", "replace")), "v2"
        if path.startswith(b"/v1/models/"):
            name = path[len(b"/v1/models/") :].split(b"/", 1)[0].split(b":", 1)[0]
            return self.models.get(name.decode("utf-8", "replace")), "tfserving"
        return None, ""

    def _split(self, conn: HttpConnection, path: bytes, counted: bool) -> ApiQueue | None:
        """The API a splitter's endpoint sends this request to (the answer will name it)."""
        splitter = self.splitters.at(path)
        if splitter is None:
            return None
        queue = splitter.pick(self.apis, counted)
        if queue is not None:
            conn.extra_headers = splitter.headers[queue.key]
            conn.shadow = splitter.shadow
        return queue

    def model(
        self, conn: HttpConnection, name: str, counted: bool = True, tensors: bool = True
    ) -> ApiQueue | None:
        """The API a V2 / TF Serving model name means: an API, or one picked by a splitter
        (``counted``: a prediction, not a metadata GET; ``tensors``: no predictor answers it)."""
        queue = self.models.get(name)  # ``deployment.api``, or the API's name when unique
        if queue is None and self.splitters:
            splitter = self.splitters.by_name.get(name)
            if splitter is not None:
                queue = splitter.pick(self.apis, counted, tensors)
                if queue is not None:
                    conn.extra_headers = splitter.headers[queue.key]
                    conn.shadow = splitter.shadow
        return queue

    def connect(self) -> HttpConnection:
        return HttpConnection(self)

    def trace(self, conn: HttpConnection, given: bytes | None) -> None:
        """Keep the request's ``traceparent`` (or start one): returned in the answer, and told to
        the replica (``inferd.tracecontext``). Routes call it when one came or tracing is on."""
        header = traceparent(given)[1]
        conn.extra_headers += header
        conn.trace = header[13:-2]
        conn.client_span = client_span(given)

    def reject(
        self,
        conn: HttpConnection,
        queue: ApiQueue,
        status: int,
        message: str,
        protocol: str,
        headers: bytes = b"",
    ) -> None:
        """Answer an error without a replica, and count it."""
        conn.protocol = protocol
        conn.replica_id = ""  # not the replica of the last request on this kept connection
        conn.started = perf_counter()
        body = codec.error_body(message)
        conn.respond(status, body, headers=headers)
        self.finished(queue, status, conn, b"", body)

    def refused(self, conn: HttpConnection, path: bytes, status: int, error: bytes = b"") -> None:
        queue = self.endpoints.get(path)
        protocol = "cortex"
        if queue is None:
            queue, protocol = self._protocol_route(path)
            if queue is None:  # a splitter's route, or none: no one API to count it for
                return
        self._count_refusal(conn, queue, path, status, protocol, error)

    def _count_refusal(
        self, conn: HttpConnection, queue: ApiQueue, path: bytes, status: int, protocol: str, error: bytes
    ) -> None:
        """A request refused before it reached a replica, counted and logged as the API's."""
        conn.path = path
        conn.replica_id = ""
        conn.extra_headers = conn.trace = conn.client_span = b""  # none of the last request's
        conn.protocol = protocol
        conn.started = conn.sent_at = perf_counter()
        self.finished(queue, status, conn, b"", error)

    def method_not_allowed(self, conn: HttpConnection, request: Request, allowed: bytes) -> None:
        """A 405 naming ``allowed`` and OPTIONS, which every route answers (a CORS preflight)."""
        conn.respond(405, not_allowed(request), headers=b"Allow: " + allowed + b", OPTIONS\r\n")

    def _healthz(self, conn: HttpConnection) -> None:
        waiting = self.not_ready()
        if self.draining:
            conn.respond(503, orjson.dumps({"ok": False, "reason": "shutting down"}))
        elif waiting:
            conn.respond(503, orjson.dumps({"ok": False, "not_ready": waiting}))
        else:
            conn.respond(200, orjson.dumps({"ok": True}))

    def finished(
        self, queue: ApiQueue, status: int, conn: HttpConnection, meta: bytes, error: bytes = b""
    ) -> bytes:
        """Count one answered request: status, latency, stage timings, tracker; log it (with
        ``error``, the body of an error answer, in the access log).

        Returns response headers the replica asked for (the V2 binary header length).
        """
        headers = b""
        if meta:
            binary_header = messages.META.unpack_from(meta)[4]
            if binary_header:
                headers = b"Inference-Header-Content-Length: %d\r\n" % binary_header
        if self.tracer is not None:
            self.tracer.record(queue, conn, status, meta)
        if not self.metrics and self.access_log is None:
            return headers
        now = perf_counter()
        latency = now - conn.started
        if self.metrics:
            queue.stats.add(conn.protocol, status, now, latency, conn.sent_at - conn.started, meta)
            stream = conn.stream
            if stream is not None and stream.opened:
                queue.stats.add_stream(stream.first_item if stream.items else None, stream.items, latency)
        if self.access_log is not None:  # with --no-metrics too: it turns off counting only
            self.access_log.record(queue.key, conn, status, latency, error)
        return headers

    def record(
        self, queue: ApiQueue, conn: HttpConnection, request: bytes, status: int, answer: bytes
    ) -> None:
        copy = conn.copy
        if copy is None:
            self.payloads.add(queue, conn, request, status, answer)
        else:
            conn.copy = None
            self.shadows.follow(copy, queue, conn, request, status, answer)


def not_allowed(request: Request) -> bytes:
    """The body of a 405 to ``request``."""
    return codec.error_body(f"method {request.method.decode('latin-1')} is not allowed here")
