"""W3C Trace Context at the gateway, and OpenTelemetry stage spans when the extra is configured.

A request's ``traceparent`` is kept (or one is started) and returned in the answer. With the
``inferd[otel]`` extra installed and ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, each answered request
exports a ``request`` span with four children, ``queue``, ``pre_inference``, ``model`` and
``post_inference``, timed from what the replica reported: the spans are made after the answer,
never while the request waits.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from time import perf_counter
from typing import TYPE_CHECKING, Any

from inferd.replica import messages

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.queue import ApiQueue

# W3C Trace Context: lowercase hex only; version ff is invalid; version 00 is exactly these 55
# characters, a later version may add fields after a "-".
TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
STAGES = ("pre_inference", "model", "post_inference")
log = logging.getLogger("inferd.gateway")


def _parent(given: bytes | None) -> tuple[bytes, bytes] | None:
    """The trace id and flags of a valid ``traceparent`` (``None``: invalid, a new trace starts)."""
    match = TRACEPARENT.fullmatch(given.strip(b" \t")) if given else None
    if match is None:
        return None
    version, trace, parent, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest) or trace == b"0" * 32 or parent == b"0" * 16:
        return None
    return trace, flags


def traceparent(given: bytes | None) -> tuple[bytes, bytes]:
    """The request's trace id and its ``traceparent`` answer header (a new trace when none came,
    or when the one that came is not valid). The header names the gateway's span of the
    request: the ``request`` span the tracer exports has that id."""
    parent = _parent(given)
    trace, flags = parent if parent is not None else (os.urandom(16).hex().encode(), b"01")
    span = os.urandom(8).hex().encode()
    return trace, b"traceparent: 00-" + trace + b"-" + span + b"-" + flags + b"\r\n"


def client_span(given: bytes | None) -> bytes:
    """The span id of the client's valid ``traceparent`` (b"": none came, or it was not valid)."""
    match = TRACEPARENT.fullmatch(given.strip(b" \t")) if given and _parent(given) else None
    return match.group(3) if match is not None else b""


def _preset_ids() -> Any:
    """An OpenTelemetry id generator that gives the next span the ids the gateway chose (those of
    the ``traceparent`` it answered with), and random ones otherwise."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class PresetIds(RandomIdGenerator):
        def __init__(self) -> None:
            self.trace_id = self.span_id = 0  # 0: none chosen

        def generate_trace_id(self) -> int:
            return self.trace_id or super().generate_trace_id()

        def generate_span_id(self) -> int:
            return self.span_id or super().generate_span_id()

    return PresetIds()


class Tracer:
    """Makes the stage spans of answered requests with an OpenTelemetry ``TracerProvider``."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("inferd.gateway")
        self.propagator = TraceContextTextMapPropagator()
        # The request span takes the ids of the traceparent the client got back (the SDK's tracer
        # asks its id_generator for them); its other spans keep random ones.
        self.ids = _preset_ids()
        self.tracer.id_generator = self.ids

    @classmethod
    def from_environment(cls) -> Tracer | None:
        """A tracer exporting over OTLP when configured and installed (else ``None``)."""
        environ = os.environ
        configured = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        if not configured or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry exporter is not installed "
                "(pip install 'inferd[otel]'): no spans are exported"
            )
            return None
        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, as the SDK reads them
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "inferd"}))  # none given
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def record(self, queue: ApiQueue, conn: HttpConnection, status: int, meta: bytes) -> None:
        # conn.trace: the traceparent answered (``00-<trace>-<span>-<flags>``), b"" when none was
        # (a request refused before its route kept one); conn.client_span: the client's span.
        answered = conn.trace.decode()
        parent = conn.client_span.decode()
        carrier = {"traceparent": f"00-{answered[3:35]}-{parent}-{answered[53:55]}"} if parent else {}
        context = self.propagator.extract(carrier)
        now = perf_counter()
        to_ns = time.time_ns() - int(now * 1e9)  # perf_counter seconds -> wall-clock ns

        def at(moment: float) -> int:
            return to_ns + int(moment * 1e9)

        attributes = {
            "inferd.api": queue.key,
            "http.status_code": status,
            "inferd.request_id": conn.request_id.decode(),
        }
        if answered:
            self.ids.trace_id, self.ids.span_id = int(answered[3:35], 16), int(answered[36:52], 16)
        from opentelemetry import trace

        try:
            # A server span; a 5xx marks it an error (OpenTelemetry's HTTP conventions: a 4xx is
            # the client's, its status stays unset), so a trace backend's error filter finds it.
            root = self.tracer.start_span(
                "request",
                context=context,
                kind=trace.SpanKind.SERVER,
                start_time=at(conn.started),
                attributes=attributes,
            )
        finally:
            self.ids.trace_id = self.ids.span_id = 0
        if status >= 500:
            root.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {status}"))

        inner = trace.set_span_in_context(root, context)
        # Never sent to a replica: it waited at the gateway until it was refused (at once, or when
        # its wait ended), and has no replica stages (spans of 0 ms read as a model that ran).
        # No replica named is the sign: submit sets sent_at to started until a replica takes it.
        sent = bool(conn.replica_id)
        moment = conn.sent_at if sent else now
        self.tracer.start_span("queue", context=inner, start_time=at(conn.started)).end(end_time=at(moment))
        # A replica's answer: its stages, each as long as it measured (0 for one it has not, as
        # an ONNX model's pre_inference without a request handler).
        timings = messages.META.unpack_from(meta)[:3] if meta else ()
        for name, seconds in zip(STAGES[: len(timings)], timings, strict=True):
            length = 0.0 if math.isnan(seconds) else seconds
            self.tracer.start_span(name, context=inner, start_time=at(moment)).end(
                end_time=at(moment + length)
            )
            moment += length
        root.end(end_time=at(now))
