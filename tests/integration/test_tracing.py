"""Tracing: traceparent kept and returned; four stage spans under the request's trace id."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from pathlib import Path
from typing import Any

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from inferd.config.load import load_project
from inferd.engine.local import LocalEngine
from inferd.gateway.app import Gateway
from inferd.gateway.tracing import Tracer
from tests.conftest import ADD_V2_BODY, make_project, wait_for
from tests.integration.conftest import Inferd

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
- kind: api
  name: guarded
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
  auth: {keys_file: keys.txt}
"""
PREDICTOR = """
def predict(sample, metadata):
    if sample == {"fail": True}:
        raise ValueError("failed on purpose")
    return sample
"""
# What a handler sees of the request's trace context (carried to the replica in a TRACE frame).
CONTEXT = """
from inferd import tracecontext

def predict(sample, metadata):
    return {"traceparent": tracecontext.traceparent(), "trace_id": tracecontext.trace_id()}
"""
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


async def wait_until(check: Any, timeout: float = 120) -> None:
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
        files = {"predictor.py": PREDICTOR, "context.py": CONTEXT, "keys.txt": "key-1\n"}
        await engine.apply(load_project(make_project(root / "p", YAML, files)))
        await wait_until(lambda: all(q.ready for q in gateway.apis.values()))
        given = f"00-{TRACE}-{CLIENT_SPAN}-01"
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
        # The request span is a child of the client's span, and is the span the answer names (and
        # the replica sees): the client's trace tree has no gap.
        assert root_span.parent is not None and format(root_span.parent.span_id, "016x") == CLIENT_SPAN
        assert answer.headers["traceparent"] == f"00-{TRACE}-{root_id:016x}-01"
        # No traceparent: one is started and returned, and its span is the request span, a root.
        exporter.clear()
        fresh = await asyncio.to_thread(requests.post, url, json={"a": 2})
        started = fresh.headers["traceparent"].split("-")
        assert len(started[1]) == 32 and started[1] != TRACE
        (fresh_root,) = [span for span in exporter.get_finished_spans() if span.name == "request"]
        assert fresh_root.parent is None
        # A client that does not sample its trace (flags 00) gets it back, and no span is exported.
        exporter.clear()
        unsampled = f"00-{TRACE}-{CLIENT_SPAN}-00"
        kept = await asyncio.to_thread(requests.post, url, json={"a": 3}, headers={"traceparent": unsampled})
        assert (
            kept.headers["traceparent"].startswith(f"00-{TRACE}-")
            and kept.headers["traceparent"][-3:] == "-00"
        )
        assert exporter.get_finished_spans() == ()
        assert f"{fresh_root.context.trace_id:032x}-{fresh_root.context.span_id:016x}" == "-".join(
            started[1:3]
        )
        # The handler sees the trace context the client gets back: given, then started.
        context_url = url.replace("/echo", "/context")
        seen = await asyncio.to_thread(requests.post, context_url, json={}, headers={"traceparent": given})
        assert seen.json() == {"traceparent": seen.headers["traceparent"], "trace_id": TRACE}
        for _ in range(3):  # each request its own (a fresh trace each time here)
            seen = await asyncio.to_thread(requests.post, context_url, json={})
            assert seen.json()["traceparent"] == seen.headers["traceparent"]
        # The request span is a server span; a 5xx answer marks it an error (a trace backend's
        # error filter found none: every span's status was unset), a 4xx does not (the client's).
        exporter.clear()
        failed = await asyncio.to_thread(requests.post, url, json={"fail": True})
        bad = await asyncio.to_thread(requests.post, url, data=b"{not json")
        assert (failed.status_code, bad.status_code) == (500, 400)
        roots = {
            span.attributes["http.status_code"]: span
            for span in exporter.get_finished_spans()
            if span.name == "request" and span.attributes is not None
        }
        assert all(span.kind == SpanKind.SERVER for span in roots.values())
        assert roots[500].status.status_code == StatusCode.ERROR
        assert roots[400].status.status_code == StatusCode.UNSET
        # A request the gateway refused itself (no replica ran it) has no replica stage spans: they
        # were exported, 0 ms each, as if its model had run.
        exporter.clear()
        v2 = url.replace("/traced/echo", "/v2/models/echo/infer")
        refused = await asyncio.to_thread(requests.post, v2, json={}, headers={"traceparent": given})
        assert refused.status_code == 400 and refused.headers["traceparent"].startswith(f"00-{TRACE}-")
        assert sorted(span.name for span in exporter.get_finished_spans()) == ["queue", "request"]
        # A wrong key refused on a kept connection (as its head ends) has its own span: it took
        # the trace and span ids of the request before it on that connection.
        exporter.clear()
        with requests.Session() as session:
            kept_ok = await asyncio.to_thread(
                session.post, url, json={"a": 4}, headers={"traceparent": given}
            )
            keyless = await asyncio.to_thread(session.post, url.replace("/echo", "/guarded"), json={"a": 5})
        assert (kept_ok.status_code, keyless.status_code) == (200, 401)
        ids = {
            span.attributes["http.status_code"]: (span.context.trace_id, span.context.span_id)
            for span in exporter.get_finished_spans()
            if span.name == "request" and span.attributes is not None
        }
        assert format(ids[200][0], "032x") == TRACE and ids[401][0] != ids[200][0], ids
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


class Collector:
    """An OTLP/HTTP trace receiver on loopback: the spans the operator exports, by trace id."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []  # (trace id, span name)
        collector = self

        class Receive(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                exported = ExportTraceServiceRequest.FromString(body)
                for resource in exported.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend((s.trace_id.hex(), s.name) for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def names(self, trace: str) -> list[str]:
        return sorted(name for trace_id, name in self.spans if trace_id == trace)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


OPERATOR_YAML = """
- kind: deployment
  name: traced
- kind: api
  name: add
  onnx: {model: models/add.onnx}
  compute: {cpu: 0.1}
- kind: traffic_splitter
  name: front
  apis:
    - {name: add, weight: 100}
"""


def test_the_operator_exports_stage_spans_over_otlp_on_every_protocol_route(
    inferd: Inferd, tmp_path: Path, two_input_model: Path
) -> None:
    collector = Collector()
    inferd.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url
    inferd.env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # the SDK's batch delay (ms), not 5 s
    try:
        project = make_project(tmp_path / "p", OPERATOR_YAML, models={"models/add.onnx": two_input_model})
        inferd.run("deploy", str(project))
        inferd.wait_status("add", "live")
        routes = [
            ("/traced/add", {"a": [[1, 2]], "b": [[3, 4]]}),
            ("/traced/front", {"a": [[1, 2]], "b": [[3, 4]]}),
            ("/v2/models/add/infer", ADD_V2_BODY),
            ("/v2/models/front/infer", ADD_V2_BODY),
            ("/v1/models/add:predict", {"instances": [{"a": [1, 2], "b": [3, 4]}]}),
            ("/v1/models/front:predict", {"instances": [{"a": [1, 2], "b": [3, 4]}]}),
        ]
        traces = [f"{number + 1:032x}" for number in range(len(routes))]
        for trace, (path, body) in zip(traces, routes, strict=True):
            given = f"00-{trace}-00f067aa0ba902b7-01"
            answer = requests.post(inferd.url + path, json=body, headers={"traceparent": given}, timeout=30)
            assert answer.status_code == 200, (path, answer.text)
            # The trace is kept and returned, whichever protocol named the API (or its splitter).
            assert answer.headers["traceparent"].startswith(f"00-{trace}-"), path
            if "front" in path:
                assert answer.headers["X-Inferd-Api"] == "add"
        # Tracing on and no traceparent given: one is started, returned and exported.
        fresh = requests.post(inferd.url + "/v2/models/add/infer", json=ADD_V2_BODY, timeout=30)
        traces.append(fresh.headers["traceparent"].split("-")[1])
        stages = ["model", "post_inference", "pre_inference", "queue", "request"]
        # Each request's four stage spans and its request span, under its own trace id.
        wait_for(
            lambda: all(collector.names(trace) == stages for trace in traces) or None,
            30,
            "the spans of every request",
        )
    finally:
        inferd.run("down", check=False)
        collector.close()
