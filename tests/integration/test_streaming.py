"""Streamed answers through a real ``inferd serve``: real replicas, real HTTP, real SSE clients.

A predictor that returns a generator streams its items (SSE or NDJSON), errors mid-stream end
the stream with an error event, a client that leaves stops the generator, a slow client slows
it, and the Open Inference Protocol's generate extension serves the same predictor.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from httpx_sse import EventSource, connect_sse
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from inferd.operator.payloads import readable
from tests.conftest import Server, wait_for, whole_lines

PROJECT = """\
- kind: deployment
  name: streaming
- kind: api
  name: one
  predictor:
    path: tokens.py
  compute:
    cpu: 100m
    min_replicas: 1
    max_replicas: 1
- kind: api
  name: four
  predictor:
    path: tokens.py
  compute:
    cpu: 100m
    min_replicas: 4
    max_replicas: 4
- kind: api
  name: labels
  onnx:
    model: iris.onnx
    request_handler: handler.py
  tracker:
    model_type: classification
    key: label
  compute:
    cpu: 100m
- kind: api
  name: short
  predictor:
    path: tokens.py
  timeout: 2
  compute:
    cpu: 100m
- kind: api
  name: logged
  predictor:
    path: tokens.py
  payload_log:
    sample: 1.0
  shadow:
    api: four
  compute:
    cpu: 100m
- kind: api
  name: slow
  predictor:
    path: tokens.py
  item_timeout: 1
  compute:
    cpu: 100m
    min_replicas: 1
    max_replicas: 1
- kind: api
  name: lagging
  predictor:
    path: tokens.py
  timeout: 2
  compute:
    cpu: 100m
    min_replicas: 1
    max_replicas: 1
- kind: api
  name: fresh
  predictor:
    path: tokens.py
  compute:
    cpu: 100m
    min_replicas: 1
    max_replicas: 1
"""

PREDICTOR = """\
import os
import time


def _note(path, line):
    if path:
        with open(path, "a") as file:
            file.write(line + "\\n")


def _wait_for(path):
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("the client never had the first item")
        time.sleep(0.01)


class Rehashed:  # a dict key whose __hash__ raises when the dict is copied
    def __init__(self):
        self.hashed = 0

    def __hash__(self):
        self.hashed += 1
        if self.hashed > 1:
            raise ValueError("hashed twice")
        return 1


def predict(sample, metadata):
    if sample.get("rehashed"):
        return iter(["first", {Rehashed(): 1}])
    if "text_input" in sample:  # the generate extension: one token per word
        return (word + " " for word in sample["text_input"].split())
    if sample.get("plain"):
        return {"plain": True}
    if sample.get("big"):  # integers past 64 bits, in a document and alone
        return iter([{"text_output": "n=", "n": 2**70}, 2**70])
    count = sample.get("count", 5)
    delay = sample.get("delay", 0.2)
    first_delay = sample.get("first_delay", delay)
    fail_after = sample.get("fail_after")
    delays = sample.get("delays", [])  # the delay before each of the first items, if given
    gate = sample.get("gate")  # a file the client makes once it has the first item
    record = sample.get("record")
    pad = "x" * sample.get("size", 0)

    def items():
        _note(sample.get("began"), "began")
        try:
            for index in range(count):
                if index == fail_after:
                    raise ValueError(f"no item {index}")
                if gate and index == 1:
                    _wait_for(gate)
                time.sleep(delays[index] if index < len(delays) else delay if index else first_delay)
                _note(record, str(index))
                yield {"index": index, "pad": pad} if pad else {"index": index}
        finally:
            _note(record, "closed")

    return items()
"""

HANDLER = """\
def post_inference(prediction, signature, metadata):
    for label in prediction[0]:
        yield {"label": int(label)}
"""

ONE = "/streaming/one"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, iris_onnx_model: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("streaming")
    (root / "cortex.yaml").write_text(PROJECT)
    (root / "tokens.py").write_text(PREDICTOR)
    (root / "handler.py").write_text(HANDLER)
    shutil.copy(iris_onnx_model, root / "iris.onnx")
    started = Server(root, root / "serve.log").wait_ready()
    yield started
    started.stop()


def timed_sse(
    server: Server, body: dict[str, Any], path: str = ONE, gate: Path | None = None
) -> tuple[list[Any], float, list[float]]:
    """(events as (event, data), the response's status, arrival times from the request);
    ``gate`` is made once the first event is in."""
    events: list[Any] = []
    times: list[float] = []
    with httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        with connect_sse(client, "POST", server.url + path, json=body) as source:
            assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
            for event in source.iter_sse():
                times.append(time.perf_counter() - started)
                events.append((event.event, event.json()))
                if gate is not None:
                    gate.touch()
    return events, started, times


# That items arrive as they are produced, and not at the end, is shown without a clock: the
# generator makes its second item only once the client has the first (``gate``), so a gateway
# that held the first back would get no second and an error. (The arrival times are printed.)


def test_sse_items_arrive_as_they_are_produced(server: Server, tmp_path: Path) -> None:
    gate = tmp_path / "first-item-arrived"
    events, _, times = timed_sse(server, {"count": 5, "delay": 0.2, "gate": str(gate)}, gate=gate)
    assert events == [("message", {"index": index}) for index in range(5)]
    print(f"SSE first item after {times[0] * 1000:.0f} ms, last after {times[-1] * 1000:.0f} ms")


def test_ndjson_when_the_client_does_not_ask_for_events(server: Server, tmp_path: Path) -> None:
    gate = tmp_path / "first-item-arrived"
    body = {"count": 5, "delay": 0.2, "gate": str(gate)}
    with httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        with client.stream("POST", server.url + ONE, json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/x-ndjson"
            lines = []
            times = []
            for line in response.iter_lines():
                times.append(time.perf_counter() - started)
                lines.append(json.loads(line))
                gate.touch()
    assert lines == [{"index": index} for index in range(5)]
    print(f"NDJSON first item after {times[0] * 1000:.0f} ms, last after {times[-1] * 1000:.0f} ms")


def test_the_accept_header_is_read_as_http_says(server: Server) -> None:
    # Media types are case-insensitive, and a client may weigh NDJSON above events.
    body = {"count": 2, "delay": 0}
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST", server.url + ONE, json=body, headers={"Accept": "TEXT/EVENT-STREAM"}
        ) as upper:
            assert upper.headers["content-type"] == "text/event-stream; charset=utf-8"
            events = [json.loads(event.data) for event in EventSource(upper).iter_sse()]
        assert events == [{"index": 0}, {"index": 1}]
        prefers = "text/event-stream;q=0.5, application/x-ndjson"
        weighed = client.post(server.url + ONE, json=body, headers={"Accept": prefers})
        assert weighed.headers["content-type"] == "application/x-ndjson"
        assert [json.loads(line) for line in weighed.text.splitlines()] == [{"index": 0}, {"index": 1}]
        # Accept is a list: two field lines are one list (RFC 9110 5.3; `curl -H` twice sends both).
        twice = [("Accept", "text/event-stream"), ("Accept", "application/json")]
        both = client.post(server.url + ONE, json=body, headers=twice)
        assert both.headers["content-type"] == "text/event-stream; charset=utf-8"


def test_an_error_mid_stream_ends_it_with_the_error(server: Server) -> None:
    events, _, _ = timed_sse(server, {"count": 5, "delay": 0.05, "fail_after": 2})
    assert events[:2] == [("message", {"index": 0}), ("message", {"index": 1})]
    assert len(events) == 3
    kind, data = events[2]
    assert kind == "error"
    assert "predict in tokens.py failed after 2 item(s): ValueError: no item 2" in data["error"]
    with httpx.Client(timeout=30) as client:
        response = client.post(server.url + ONE, json={"count": 5, "delay": 0.05, "fail_after": 2})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[:2] == [{"index": 0}, {"index": 1}]
    assert "ValueError: no item 2" in lines[2]["error"]
    assert len(lines) == 3


def test_an_item_whose_encoding_raises_ends_the_stream_with_the_error_not_the_replica(server: Server) -> None:
    # Only a TypeError from the encoder was the stream's error: anything else the value's own
    # code raised (a dict key's __hash__ as its keys were made text) ended the replica, the
    # client's stream cut short with a 200 and no error, nothing in the log.
    answer = requests.post(server.url + ONE, json={"rehashed": True}, timeout=30)
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines == [
        "first",
        {
            "error": "predict in tokens.py yielded a value that is not JSON-serialisable: "
            "encoding it raised ValueError: hashed twice"
        },
    ]
    assert requests.post(server.url + ONE, json={"plain": True}, timeout=30).json() == {"plain": True}
    assert "exited" not in server.log()


def test_post_inference_streams_too(server: Server) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    with httpx.Client(timeout=30) as client:
        response = client.post(server.url + "/streaming/labels", json=rows)
    assert response.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in response.text.splitlines()] == [{"label": 0}, {"label": 2}]


def test_debug_logs_each_streamed_item_as_it_passes(server: Server) -> None:
    body = {"count": 3, "delay": 0, "debug_mark": "debugged-stream"}
    answer = requests.post(server.url + ONE + "?debug=true", json=body, timeout=30)
    assert [json.loads(line) for line in answer.text.splitlines()] == [{"index": i} for i in range(3)]
    log = wait_for(lambda: "prediction item 2: {'index': 2}" in server.log() and server.log(), 30, "item 2")
    assert "prediction item 0: {'index': 0}" in log and "prediction item 1: {'index': 1}" in log
    assert "prediction: <generator object" not in log  # was the whole of what it logged


def test_failing_before_the_first_item_and_plain_results_are_ordinary_answers(server: Server) -> None:
    failed = requests.post(server.url + ONE, json={"fail_after": 0}, timeout=30)
    assert failed.status_code == 500
    assert "no item 0" in failed.json()["error"]
    plain = requests.post(server.url + ONE, json={"plain": True}, timeout=30)
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == {"plain": True}
    empty = requests.post(server.url + ONE, json={"count": 0}, timeout=30)
    assert (empty.status_code, empty.text) == (200, "")


def produced(record: Path) -> list[str]:
    return record.read_text().split() if record.exists() else []


def client_closed(server: Server, api: str) -> float:
    """``inferd_requests_total`` of ``api`` with code 499 (its client left before the end)."""
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    found = re.search(rf'inferd_requests_total\{{[^}}]*api="{api}"[^}}]*code="499"[^}}]*\}} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_a_client_that_leaves_stops_the_generator(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "produced.txt"
    # Two items at once, then one a second: the client's leaving has a second to reach the
    # replica before the third item (which may still be made), however busy the machine.
    body = {"count": 50, "delays": [0, 0.05], "delay": 1.0, "record": str(record)}
    left_before = client_closed(server, "one")
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "POST", server.url + ONE, json=body) as source,
    ):
        events = source.iter_sse()
        assert [next(events).json(), next(events).json()] == [{"index": 0}, {"index": 1}]
        # leaving the block closes the connection after two items
    wait_for(lambda: "closed" in produced(record), 30, "the generator to be closed")
    assert len(produced(record)) - 1 <= 3  # at most one more item than the client read
    # counted as nginx does, 499 (client closed request), not the 200 the replica ended with
    wait_for(lambda: client_closed(server, "one") == left_before + 1, 30, "the stream counted as a 499")
    started = time.perf_counter()
    # A replica still running the old generator would hold this request for its 47 remaining
    # seconds: the read timeout, far from both, tells the two apart on any machine.
    answer = requests.post(server.url + ONE, json={"count": 1, "delay": 0}, timeout=20)
    elapsed = time.perf_counter() - started
    print(f"the next request on the one replica took {elapsed * 1000:.0f} ms")
    assert answer.status_code == 200 and json.loads(answer.text) == {"index": 0}


def test_a_client_that_leaves_before_the_first_item_stops_the_generator_at_it(
    server: Server, tmp_path: Path
) -> None:
    # `fresh` streams nothing else: the first stream of a replica, which was stopped only at its
    # second item (the gateway took the replica for one of plain answers until an item came).
    record, began = tmp_path / "produced.txt", tmp_path / "began"
    body = json.dumps({"count": 50, "delay": 1.0, "record": str(record), "began": str(began)}).encode()
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"POST /streaming/fresh HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        wait_for(began.exists, 30, "the generator to begin")
    # The replica was told as the client left, a second before the first item: it stops there.
    wait_for(lambda: "closed" in produced(record), 30, "the generator to be closed")
    assert produced(record) == ["0", "closed"]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_fifty_concurrent_streams_on_four_replicas(server: Server) -> None:
    def one_stream(_: int) -> list[Any]:
        with (
            httpx.Client(timeout=60) as client,
            connect_sse(
                client, "POST", server.url + "/streaming/four", json={"count": 5, "delay": 0.05}
            ) as source,
        ):
            return [event.json() for event in source.iter_sse()]

    def round_of_fifty() -> None:
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one_stream, range(50)))
        assert results == [[{"index": index} for index in range(5)]] * 50

    round_of_fifty()
    before = rss(server.process.pid)
    round_of_fifty()
    grown = rss(server.process.pid) - before
    print(f"gateway RSS grew {grown / 1024:.0f} KiB over 50 more streams")
    assert grown < 16 * 1024 * 1024


def test_a_slow_client_slows_the_generator(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "produced.txt"
    body = json.dumps({"count": 1000, "delay": 0, "size": 20_000, "record": str(record)}).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        port = int(server.url.rsplit(":", 1)[1])
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (ONE.encode(), len(body), body)
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # 20 MB would be produced in well under a second if nothing held the generator back
        wait_for(lambda: len(produced(record)) >= 10, 10, "some items")
        time.sleep(2)
        count = len(produced(record))
        held = metric(server, "inferd_stream_buffered_bytes", "one")
        print(f"a client that stopped reading held the generator at {count} of 1000 items")
        print(f"the gateway held {held / 1024:.0f} KiB for it")
        assert count < 500
        assert held <= 64 * 1024 + 256 * 1024 + 2 * 20_100
    wait_for(lambda: "closed" in produced(record), 30, "the generator to be closed")


def raw_stream(server: Server, path: str, body: dict[str, Any]) -> socket.socket:
    """A connection that sent ``body`` and reads its answer through a 4 KiB receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    data = json.dumps(body).encode()
    sock.sendall(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data)
    )
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything up to the chunked body's last chunk (or the close)."""
    sock.settimeout(30)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        piece = sock.recv(1 << 20)
        if not piece:
            break
        data += piece
    return data


def test_a_client_that_pauses_longer_than_item_timeout_is_not_a_stuck_generator(
    server: Server, tmp_path: Path
) -> None:
    # The generator waits on the client (backpressure), not the other way round: item_timeout
    # (1 s here) bounds the generator only. A pause of 3 s used to end the stream with "produced no
    # item within the api's item_timeout" and had the healthy replica killed and replaced.
    record = tmp_path / "produced.txt"
    body = {"count": 300, "delay": 0, "size": 20_000, "record": str(record)}  # 6 MB, past every buffer
    with raw_stream(server, "/streaming/slow", body) as sock:
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        wait_for(lambda: len(produced(record)) >= 10, 10, "some items")
        time.sleep(3)  # the client reads nothing for three times the item_timeout
        assert "closed" not in produced(record)  # held back by the client, not run to its end
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # reads the rest quickly
        data = head + read_to_end(sock)
    assert b"error" not in data, data[-300:]
    assert data.count(b'"index":') == 300
    wait_for(lambda: "closed" in produced(record), 30, "the generator to end")


def test_timeout_stops_the_generator_of_a_client_that_reads_nothing(server: Server, tmp_path: Path) -> None:
    # The API's timeout (2 s) ends the stream and tells the replica to stop. The replica was
    # blocked sending to a gateway that no longer read it, so it never heard: it was killed and
    # replaced (its generator's finally never ran) instead of closing the generator and serving on.
    record = tmp_path / "produced.txt"
    body = {"count": 1000, "delay": 0, "size": 20_000, "record": str(record)}
    with raw_stream(server, "/streaming/short", body) as sock:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        wait_for(lambda: "closed" in produced(record), 30, "the generator to be closed")
    assert len(produced(record)) < 1000
    answer = requests.post(server.url + "/streaming/short", json={"count": 1, "delay": 0}, timeout=30)
    assert answer.status_code == 200 and json.loads(answer.text) == {"index": 0}


def test_item_timeout_ends_a_stalled_stream(server: Server) -> None:
    events, _, _ = timed_sse(server, {"count": 3, "first_delay": 0, "delay": 5}, "/streaming/slow")
    assert events[0] == ("message", {"index": 0})
    kind, data = events[1]
    assert kind == "error"
    assert "item_timeout (1s)" in data["error"]


def test_item_timeout_bounds_the_wait_for_the_first_item_too(server: Server) -> None:
    # ``predict`` returns an iterator (not a generator function): known to stream once it has
    timed_sse(server, {"count": 1, "delay": 0}, "/streaming/slow")
    answer = requests.post(server.url + "/streaming/slow", json={"count": 3, "first_delay": 5}, timeout=30)
    assert answer.status_code == 504
    assert "item_timeout (1s)" in answer.json()["error"]


def timed_out(server: Server, api: str) -> float:
    """``inferd_requests_total{code="504"}`` of ``api``."""
    text = requests.get(server.url + "/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inferd_requests_total"
        and sample.labels == {**sample.labels, "api": api, "code": "504"}
    )


def test_timeout_bounds_the_whole_stream(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "produced.txt"
    # Items at 0, 0.75, 1.5 and 2.25 s against the API's 2 s: the stop it is told at 2 s has
    # until the item at 3.75 s to reach the replica, however busy the machine.
    body = {"count": 50, "first_delay": 0, "delay": 0.75, "record": str(record)}
    before = timed_out(server, "short")
    events, _, _ = timed_sse(server, body, "/streaming/short")
    items = [data for kind, data in events if kind == "message"]
    assert items == [{"index": index} for index in range(len(items))] and 2 <= len(items) < 50
    kind, data = events[-1]
    assert kind == "error"
    assert "did not finish within the api's timeout (2s)" in data["error"]
    # the replica was told to stop: the generator is closed, not run to its 50th item
    wait_for(lambda: "closed" in produced(record), 30, "the generator to be closed")
    assert len(produced(record)) - 1 <= len(items) + 2
    # counted as what the client got (a timeout), not as the 200 its stopped replica ended with
    wait_for(lambda: timed_out(server, "short") == before + 1, 10, "the stream to be counted as a 504")


def stream_ahead(pool: ThreadPoolExecutor, url: str, began: Path) -> Future[requests.Response]:
    """A stream that holds the API's one replica for 1.6 s before its item (begun once it returns)."""
    body = {"count": 1, "first_delay": 1.6, "began": str(began)}
    ahead = pool.submit(requests.post, url, json=body, timeout=30)
    wait_for(began.exists, 30, "the first stream to begin")
    return ahead


def test_a_stream_answered_504_before_its_first_item_is_stopped_at_it(server: Server, tmp_path: Path) -> None:
    # A stream that waited most of the API's 2 s timeout behind another is answered 504 at its
    # deadline, before its first item; its replica streamed on to nobody (100 items, 5 s) until
    # it was stopped and replaced 2 s after taking it. It is told to stop at its first item.
    began, record = tmp_path / "began", tmp_path / "produced.txt"
    url = server.url + "/streaming/lagging"
    before = timed_out(server, "lagging")
    with ThreadPoolExecutor(1) as pool:
        ahead = stream_ahead(pool, url, began)
        late = {"count": 100, "first_delay": 1.0, "delay": 0.05, "record": str(record)}
        answer = requests.post(url, json=late, timeout=30)
        assert ahead.result().status_code == 200
    assert answer.status_code == 504 and "timeout (2s)" in answer.json()["error"]
    wait_for(lambda: "closed" in produced(record), 30, "the generator to be closed")
    assert len(produced(record)) <= 4, produced(record)
    after = requests.post(url, json={"count": 1, "delay": 0}, timeout=30)
    assert after.status_code == 200 and json.loads(after.text) == {"index": 0}
    assert timed_out(server, "lagging") == before + 1  # the 504, counted once


def test_a_client_that_left_before_its_deadline_passed_is_counted_once(
    server: Server, tmp_path: Path
) -> None:
    # A request whose client left while its replica ran it, then whose deadline passed before the
    # replica answered, was never counted: not in /metrics, `inferd get` or the access log.
    ahead_began, began = tmp_path / "ahead", tmp_path / "began"
    url = server.url + "/streaming/lagging"
    before = client_closed(server, "lagging")
    with ThreadPoolExecutor(1) as pool:
        ahead = stream_ahead(pool, url, ahead_began)
        body = json.dumps({"count": 1, "first_delay": 1.2, "began": str(began)}).encode()
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(
                b"POST /streaming/lagging HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            wait_for(began.exists, 30, "the second stream to begin")
        assert ahead.result().status_code == 200
    wait_for(lambda: client_closed(server, "lagging") == before + 1, 10, "the client that left to be counted")
    after = requests.post(url, json={"count": 1, "delay": 0}, timeout=30)
    assert after.status_code == 200
    assert client_closed(server, "lagging") == before + 1


def test_generate_extension(server: Server, tmp_path: Path) -> None:
    answer = requests.post(server.url + "/v2/models/one/generate", json={"text_input": "a b c"}, timeout=30)
    assert answer.status_code == 200
    assert answer.json() == {"model_name": "one", "model_version": "1", "text_output": "a b c "}
    events, _, _ = timed_sse(server, {"text_input": "a b c"}, "/v2/models/one/generate_stream")
    assert [data for _, data in events] == [
        {"model_name": "one", "model_version": "1", "text_output": token} for token in ("a ", "b ", "c ")
    ]
    # generate holds the text until the end: a longer one is an error and the generator stops
    # (it was held whole: a generator yielding for ever filled the gateway's memory)
    record = tmp_path / "generate-record"
    huge = {"count": 200, "size": 1 << 20, "delay": 0, "record": str(record)}
    answer = requests.post(server.url + "/v2/models/one/generate", json=huge, timeout=60)
    assert answer.status_code == 500
    assert (
        answer.json()["error"] == "the generated text passed 64 MiB: read a longer one with generate_stream"
    )
    wait_for(lambda: record.exists() and record.read_text().endswith("closed\n"), 30, "the generator closed")
    assert len(record.read_text().split()) < 150  # stopped early, not run to its end
    assert requests.post(server.url + "/v2/models/one/generate", json={"text_input": "d"}, timeout=30).ok


def test_a_streamed_answer_is_recorded_as_its_items_and_an_identical_shadow_agrees(
    server: Server, inferd_home: Path, tmp_path: Path
) -> None:
    # The payload log recorded a streamed answer as null (the END frame's empty body) while the
    # shadow's copy kept every item (a 200 MB stream: a 200 MB record, the gateway at 1.3 GB), so
    # a shadow answering exactly as its primary never agreed.
    small = {"count": 3, "delay": 0, "record": str(tmp_path / "small")}
    large = {"count": 30, "delay": 0, "size": 100_000, "record": str(tmp_path / "large")}  # 3 MB
    for body in (small, large):
        answer = requests.post(server.url + "/streaming/logged", json=body, timeout=30)
        assert answer.status_code == 200 and len(answer.text.splitlines()) == body["count"]
    log = inferd_home / "payloads" / "streaming" / "logged.jsonl"

    def records() -> list[dict[str, Any]] | None:
        # a 1 MB record may be half written; a large body is its text, parsed as inferd reads it
        found = [readable(json.loads(line)) for line in whole_lines(log)]
        mine = [r for r in found if r["request"]["json"] in (small, large) and "shadow" in r]
        return mine if len(mine) == 2 else None

    recorded = {r["request"]["json"]["record"]: r for r in wait_for(records, 30, "both records")}
    first = recorded[small["record"]]
    assert first["response"]["json"] == [{"index": index} for index in range(3)]
    assert first["shadow"]["response"]["json"] == first["response"]["json"] and first["shadow"]["agrees"]
    second = recorded[large["record"]]
    items = second["response"]["json"]
    assert 0 < len(items) < 30 and items == [{"index": i, "pad": "x" * 100_000} for i in range(len(items))]
    assert len(json.dumps(items)) <= 1 << 20  # the first MiB of the items
    assert second["shadow"]["agrees"]


def metrics(server: Server) -> dict[tuple[str, str | None], float]:
    text = requests.get(server.url + "/metrics", timeout=30).text
    return {
        (sample.name, sample.labels.get("api")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "le" not in sample.labels
    }


def metric(server: Server, name: str, api: str) -> float:
    return metrics(server)[(name, api)]


def test_stream_metrics(server: Server) -> None:
    timed_sse(server, {"count": 3, "delay": 0.01})
    samples = metrics(server)
    assert samples[("inferd_streams_total", "one")] >= 1
    assert samples[("inferd_stream_items_total", "one")] >= 3
    assert samples[("inferd_stream_first_item_seconds_count", "one")] >= 1
    assert samples[("inferd_stream_duration_seconds_count", "one")] >= 1


def test_a_tracker_counts_a_stream_of_one_item_as_that_item(server: Server) -> None:
    # A streamed answer is the list of its items (as `inferd test` and the payload log show it):
    # one item is tracked as that item; several make no single prediction, as a plain list does not.
    with httpx.Client(timeout=30) as client:
        one = client.post(server.url + "/streaming/labels", json=[[6.7, 3.0, 5.2, 2.3]])
        two = client.post(server.url + "/streaming/labels", json=[[6.7, 3.0, 5.2, 2.3], [6.7, 3.0, 5.2, 2.3]])
    assert one.text.splitlines() == ['{"label":2}'] and len(two.text.splitlines()) == 2
    text = requests.get(server.url + "/metrics", timeout=30).text
    counted = {
        sample.labels["class"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inferd_predictions_total" and sample.labels.get("api") == "labels"
    }
    assert counted == {"2": 1.0}
    wait_for(lambda: "a streamed answer of 2 items" in server.log(), what="the tracker's warning")


def test_the_openapi_document_shows_streams_and_the_generate_routes(server: Server) -> None:
    document = requests.get(server.url + "/openapi.json", timeout=30).json()
    validate(document)
    answer = document["paths"][ONE]["post"]["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream", "application/x-ndjson"} <= set(answer)
    for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
        generate = document["paths"][prefix + "/generate"]["post"]["responses"]["200"]["content"]
        stream = document["paths"][prefix + "/generate_stream"]["post"]["responses"]["200"]["content"]
        assert "application/json" in generate and "text/event-stream" in stream


def test_generate_answers_big_integers_as_their_digits(server: Server) -> None:
    # As every answer does (README); the gateway read each item back as orjson does: a float.
    body = {"big": True}
    answer = requests.post(server.url + "/v2/models/one/generate", json=body, timeout=30)
    assert answer.json()["text_output"] == f"n={2**70}"
    stream = requests.post(server.url + "/v2/models/one/generate_stream", json=body, timeout=30)
    events = [json.loads(line[len("data: ") :]) for line in stream.text.splitlines() if line]
    assert events == [
        {"model_name": "one", "model_version": "1", "text_output": "n=", "n": 2**70},
        {"model_name": "one", "model_version": "1", "text_output": str(2**70)},
    ]


def test_generate_answers_text_with_a_lone_surrogate(server: Server) -> None:
    # JSON's "\ud800" is text Python reads (a request's, echoed); orjson refused it in the gateway,
    # which answered "stopped before answering; retry it" and let the replica go.
    body = b'{"text_input": "caf\\u00e9 \\ud83c\\udf0d \\ud800 end"}'
    answer = requests.post(server.url + "/v2/models/one/generate", data=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.text)["text_output"] == "caf\u00e9 \U0001f30d \ud800 end "
    stream = requests.post(server.url + "/v2/models/one/generate_stream", data=body, timeout=30)
    events = [json.loads(line[len("data: ") :]) for line in stream.text.splitlines() if line]
    assert [event["text_output"] for event in events] == ["caf\u00e9 ", "\U0001f30d ", "\ud800 ", "end "]


def test_events_are_read_as_utf_8_by_a_requests_client(server: Server) -> None:
    # A bare text/event-stream is Latin-1 to requests (text/* without a charset): "cafÃ©".
    body = {"text_input": "caf\u00e9 \U0001f30d"}
    headers = {"Accept": "text/event-stream"}
    with requests.post(server.url + ONE, json=body, headers=headers, stream=True, timeout=30) as answer:
        lines = [line for line in answer.iter_lines(decode_unicode=True) if line]
    assert lines == ['data: "caf\u00e9 "', 'data: "\U0001f30d "']
    stream = requests.post(server.url + "/v2/models/one/generate_stream", json=body, timeout=30)
    assert [
        json.loads(line[len("data: ") :])["text_output"] for line in stream.text.splitlines() if line
    ] == [
        "caf\u00e9 ",
        "\U0001f30d ",
    ]
