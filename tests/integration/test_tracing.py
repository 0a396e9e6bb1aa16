"""Tracing: traceparent kept and returned; four stage spans under the request's trace id."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inferd.config.load import load_project
from inferd.engine.local import LocalEngine
from inferd.gateway import Gateway
from inferd.gateway.tracing import Tracer
from tests.conftest import make_project

YAML = """
- kind: deployment
  name: traced
- kind: api
  name: echo
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
- kind: api
  name: context
  predictor: {path: context.py}
  compute: {cpu: 0.1}
"""
PREDICTOR = "def predict(sample, metadata):\n    return sample\n"
# What a handler sees of the request's trace context (carried to the replica in a TRACE frame).
CONTEXT = """
from inferd import tracecontext

def predict(sample, metadata):
    return {"traceparent": tracecontext.traceparent(), "trace_id": tracecontext.trace_id()}
"""
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def wait_until(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def scenario(root: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gateway = Gateway()
    gateway.tracer = Tracer(provider)
    engine = LocalEngine(gateway, home=root / "home")
    await gateway.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{gateway.ports[0]}/traced/echo"
    try:
        files = {"predictor.py": PREDICTOR, "context.py": CONTEXT}
        await engine.apply(load_project(make_project(root / "p", YAML, files)))
        await wait_until(lambda: gateway.apis["traced/echo"].ready and gateway.apis["traced/context"].ready)
        given = f"00-{TRACE}-00f067aa0ba902b7-01"
        answer = await asyncio.to_thread(requests.post, url, json={"a": 1}, headers={"traceparent": given})
        assert answer.status_code == 200 and answer.json() == {"a": 1}
        assert answer.headers["traceparent"].startswith(f"00-{TRACE}-")
        spans = exporter.get_finished_spans()
        assert sorted(span.name for span in spans) == sorted(
            ["request", "queue", "pre_inference", "model", "post_inference"]
        )
        assert {format(span.context.trace_id, "032x") for span in spans} == {TRACE}
        (root_span,) = [span for span in spans if span.name == "request"]
        context = root_span.get_span_context()
        assert context is not None
        root_id = context.span_id
        children = [span for span in spans if span is not root_span]
        assert all(span.parent is not None and span.parent.span_id == root_id for span in children)
        # No traceparent: one is started and returned.
        fresh = await asyncio.to_thread(requests.post, url, json={"a": 2})
        started = fresh.headers["traceparent"].split("-")
        assert len(started[1]) == 32 and started[1] != TRACE
        # The handler sees the trace context the client gets back: given, then started.
        context_url = url.replace("/echo", "/context")
        seen = await asyncio.to_thread(requests.post, context_url, json={}, headers={"traceparent": given})
        assert seen.json() == {"traceparent": seen.headers["traceparent"], "trace_id": TRACE}
        for _ in range(3):  # each request its own (a fresh trace each time here)
            seen = await asyncio.to_thread(requests.post, context_url, json={})
            assert seen.json()["traceparent"] == seen.headers["traceparent"]
        # Without tracing configured, an untraced request (after a traced one) has no context.
        gateway.tracer = None
        for headers in ({"traceparent": given}, {}):
            seen = await asyncio.to_thread(requests.post, context_url, json={}, headers=headers)
            assert seen.json()["trace_id"] == (TRACE if headers else None)
            assert ("traceparent" in seen.headers) == bool(headers)
    finally:
        await gateway.drain(5)
        await engine.stop()
        await gateway.close()
        provider.shutdown()


def test_one_request_yields_four_stage_spans_under_its_trace(tmp_path: Path) -> None:
    asyncio.run(scenario(tmp_path))
