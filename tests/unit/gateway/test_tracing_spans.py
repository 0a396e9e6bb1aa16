"""The spans of a request the gateway answered itself: its queue span lasts its whole wait."""

from __future__ import annotations

from time import perf_counter
from types import SimpleNamespace
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inferd.gateway.tracing import Tracer


def spans_of(conn: Any, status: int) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    Tracer(provider).record(SimpleNamespace(key="d/a"), conn, status, b"")  # type: ignore[arg-type]
    return {span.name: span for span in exporter.get_finished_spans()}


def connection(waited: float, replica_id: str) -> SimpleNamespace:
    # As HttpConnection.submit leaves it: started and sent_at the same instant until a replica
    # takes the request (queue._assign moves sent_at and names the replica).
    started = perf_counter() - waited
    return SimpleNamespace(
        trace=b"", client_span=b"", request_id=b"r1", started=started, sent_at=started, replica_id=replica_id
    )


def test_a_request_refused_after_its_wait_has_a_queue_span_of_that_wait() -> None:
    # Queued 2 s, then answered 504 (its timeout) or 503 (the API stopped serving) by the
    # gateway: its queue span was exported 0 ms long, as if a replica had taken it at once.
    spans = spans_of(connection(2.0, ""), 504)
    assert set(spans) == {"request", "queue"}
    queue = spans["queue"]
    assert queue.end_time - queue.start_time >= 1.9e9
    assert queue.end_time == spans["request"].end_time


def test_a_request_a_replica_took_ends_its_queue_span_when_sent() -> None:
    conn = connection(2.0, "r-1")
    conn.sent_at = conn.started + 0.5  # taken after 0.5 s, then abandoned by the gateway (504)
    queue = spans_of(conn, 504)["queue"]
    assert 0.4e9 <= queue.end_time - queue.start_time <= 0.6e9
