"""Defences tested as attacks: overload, deadlines, stuck handlers, disconnects, keys, hostile input."""

from __future__ import annotations

import json
import re
import socket
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Server, make_project, process_alive, replica_pids, wait_for, zygote_pids
from tests.integration.test_edge import closed_by_server

Serve = Callable[..., Server]
# "gate": the request holds its replica until that file exists (the test decides when, so no
# assertion depends on how long a sleep lasts on a busy machine).
SLOW = """
import os, time

def pre_inference(sample, signature, metadata):
    if sample.get("forever"):
        while True:
            time.sleep(1)
    while sample.get("gate") and not os.path.exists(sample["gate"]):
        time.sleep(0.01)
    return [1, 2, 3, 4]

def post_inference(prediction, signature, metadata):
    import os
    return {"pid": os.getpid()}
"""


ONE_REPLICA = "  compute:\n    max_replicas: 1\n"  # no second replica from the autoscaler


def slow_project(root: Path, model: Path, extra: str = "") -> Path:
    return make_project(
        root,
        "- kind: deployment\n  name: d\n- kind: api\n  name: slow\n  onnx:\n    model: m.onnx\n"
        f"    request_handler: h.py\n{extra}",
        {"h.py": SLOW},
        {"m.onnx": model},
    )


def test_full_queue_answers_503_at_once_and_accepted_requests_finish(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    server = serve(slow_project(tmp_path / "p", iris_onnx_model, "  max_queue_length: 2\n" + ONE_REPLICA))
    url = f"{server.url}/d/slow"
    gate = tmp_path / "go"
    with ThreadPoolExecutor(6) as pool:
        sent = [pool.submit(requests.post, url, json={"gate": str(gate)}, timeout=60) for _ in range(6)]
        # the refused are answered while the accepted are still held
        wait_for(lambda: sum(future.done() for future in sent) == 3, 60, "three requests refused")
        gate.touch()
        answers = [future.result() for future in sent]
    codes = Counter(answer.status_code for answer in answers)
    assert codes == {200: 3, 503: 3}  # one running + two queued; the rest refused
    refused = next(answer for answer in answers if answer.status_code == 503)
    assert refused.headers["Retry-After"] == "1"
    assert "overloaded" in refused.json()["error"]


def test_deadline_504_and_a_stuck_replica_is_replaced(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # One replica at most: the stuck request runs on the replica that answered first (with a
    # second one started by the autoscaler, it could have run there instead).
    one = "  timeout: 1.5\n  compute:\n    max_replicas: 1\n"
    server = serve(slow_project(tmp_path / "p", iris_onnx_model, one))
    url = f"{server.url}/d/slow"
    first_pid = requests.post(url, json={}, timeout=10).json()["pid"]
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(requests.post, url, json={"forever": True}, timeout=30)
        queued = pool.submit(requests.post, url, json={}, timeout=30)
        assert stuck.result().status_code == 504
        assert "timeout (1.5s)" in stuck.result().json()["error"]
        assert queued.result().status_code in (200, 504)
    wait_for(lambda: requests.post(url, json={}, timeout=10).status_code == 200, 60, "a replacement replica")
    assert requests.post(url, json={}, timeout=10).json()["pid"] != first_pid
    wait_for(lambda: not process_alive(first_pid), 10, "the stuck replica's process to end")


NEVER_LOADS = """
import time
time.sleep(3600)  # a model that takes for ever to load: requests wait for its first replica

def predict(sample, metadata):
    return 1
"""


def test_a_client_that_leaves_while_waiting_for_a_loading_api_leaves_its_queue(
    serve: Serve, tmp_path: Path
) -> None:
    # Was: it was counted 499 but stayed in the queue until the api's timeout: queued and in
    # flight (the autoscaler's signal) in /metrics, its body counted against --max-body-buffer,
    # and Ctrl-C of `inferd serve` waited 30 s for "1 request(s) still running".
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: loading\n  predictor:\n    path: p.py\n"
        "  timeout: 600\n",
        {"p.py": NEVER_LOADS},
    )
    server = serve(project, ready=False)
    url = f"{server.url}/d/loading"
    wait_for(lambda: requests.get(url, timeout=5).ok, 60, "the api's status")
    client = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    client.sendall(b"POST /d/loading HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    wait_for(lambda: requests.get(url, timeout=5).json()["replicas"]["queued"] == 1, 30, "a queued request")
    client.close()
    wait_for(lambda: requests.get(url, timeout=5).json()["replicas"]["queued"] == 0, 30, "the queue to empty")
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'inferd_in_flight_requests{api="loading",deployment="d"} 0.0' in metrics
    assert 'inferd_requests_total{api="loading",code="499",deployment="d",protocol="cortex"} 1.0' in metrics


def test_a_client_that_leaves_while_queued_frees_its_slot_and_is_logged_as_499(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    server = serve(
        slow_project(tmp_path / "p", iris_onnx_model, "  max_queue_length: 1\n" + ONE_REPLICA), "--access-log"
    )
    url = f"{server.url}/d/slow"
    port = int(server.url.rsplit(":", 1)[1])
    gate = tmp_path / "go"

    def send(body: bytes) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(
            b"POST /d/slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        return client

    def leave(client: socket.socket) -> None:
        # the same FIN as a close, and the server's own close, once it has let the request go,
        # says when it saw the client leave
        client.shutdown(socket.SHUT_WR)
        wait_for(lambda: closed_by_server(client), 30, "the gateway to see the client leave")
        client.close()

    with ThreadPoolExecutor(3) as pool:
        running = send(b'{"gate": "%s"}' % str(gate).encode())
        wait_for(lambda: requests.get(url, timeout=5).json()["replicas"]["busy"] == 1, 30, "a busy replica")
        queued = send(b'{"sleep": 0}')
        wait_for(
            lambda: requests.get(url, timeout=5).json()["replicas"]["queued"] == 1, 30, "a queued request"
        )
        leave(queued)  # gone while queued (the replica is still held)
        # the slot the leaver held is free again: one of two more requests takes it, one is refused
        late = [pool.submit(requests.post, url, json={}, timeout=60) for _ in range(2)]
        wait_for(lambda: sum(future.done() for future in late) == 1, 30, "one of the two refused")
        leave(running)  # gone while its replica computes its answer
        gate.touch()
        assert sorted(future.result().status_code for future in late) == [200, 503]

    # Both leavers are counted, with nginx's 499 (client closed request), not a 200 nobody read
    # nor nothing at all: in the access log and in /metrics.
    def statuses() -> Counter[int]:
        return Counter(line["status"] for line in access_lines(server) if line.get("api") == "slow")

    wait_for(lambda: statuses() == {499: 2, 200: 1, 503: 1}, 30, "four access log lines")
    errors = {line["status"]: line.get("error") for line in access_lines(server) if line.get("api") == "slow"}
    assert errors[499] == "the client closed the connection before its answer"
    assert "overloaded" in str(errors[503]) and errors[200] is None
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert re.search(r'inferd_requests_total\{[^}]*api="slow"[^}]*code="499"[^}]*\} 2\.0', metrics), metrics


def access_lines(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith('{"')]


def test_api_keys(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRIS_KEY", "env-secret-1")
    root = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: guarded\n  onnx:\n    model: m.onnx\n"
        "  auth:\n    keys_from_env: [IRIS_KEY]\n    keys_file: keys.txt\n"
        "- kind: api\n  name: open\n  onnx:\n    model: m.onnx\n",
        {"keys.txt": "# one key per line\nfile-secret-2\n"},
        {"m.onnx": iris_onnx_model},
    )
    server = serve(root, "--access-log")
    url = f"{server.url}/d/guarded"
    rows = [[5.2, 3.6, 1.4, 0.3]]
    assert requests.post(url, json=rows, timeout=5).status_code == 401
    assert (
        requests.post(url, json=rows, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
    )
    assert requests.post(url, json=rows, headers={"Authorization": "Bearer env-secret-1"}, timeout=5).ok
    assert requests.post(url, json=rows, headers={"X-API-Key": "file-secret-2"}, timeout=5).ok
    v2 = f"{server.url}/v2/models/guarded/infer"
    document = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": rows[0]}]}
    assert requests.post(v2, json=document, timeout=5).status_code == 401
    assert requests.post(v2, json=document, headers={"X-API-Key": "env-secret-1"}, timeout=5).ok
    assert (
        requests.post(
            f"{server.url}/v1/models/guarded:predict", json={"instances": rows}, timeout=5
        ).status_code
        == 401
    )
    assert requests.post(f"{server.url}/d/open", json=rows, timeout=5).ok
    wait_for(lambda: server.log().count('"api":"guarded"') >= 7, 30, "access log lines")
    assert "env-secret-1" not in server.log() and "file-secret-2" not in server.log()
    # A refusal on a kept connection is its own request: not run by the replica of the one before
    with requests.Session() as session:
        assert session.post(url, json=rows, headers={"X-API-Key": "file-secret-2"}, timeout=5).ok
        assert (
            session.post(url, json=rows, headers={"X-Request-ID": "refused-1"}, timeout=5).status_code == 401
        )
    refused = wait_for(
        lambda: next((line for line in access_lines(server) if line["id"] == "refused-1"), None),
        30,
        "its line",
    )
    assert refused["status"] == 401 and refused["replica"] is None, refused


def test_hostile_input_is_refused_and_the_server_keeps_serving(
    serve: Serve, tmp_path: Path, iris_onnx_model: Path
) -> None:
    root = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: raw\n  onnx:\n    model: m.onnx\n"
        "  max_body_size: 1Ki\n",
        models={"m.onnx": iris_onnx_model},
    )
    server = serve(root)
    url = f"{server.url}/d/raw"
    attacks: list[tuple[bytes, int]] = [
        (b"[" * 5000 + b"]" * 5000, 413),  # larger than this API's 1 KiB
        (b"[" * 300 + b"]" * 300, 400),  # deep nesting
        (b"[[" + b"9" * 400 + b", 1, 2, 3]]", 400),  # a huge number
        (b"[[nan, inf, 1, 2]]", 400),  # (NaN and Infinity, as Python's json writes them, are read)
        (b'"\xff\xfe"', 400),  # invalid UTF-8
        (b"", 400),
        (b"[[1e999, 1, 2, 3]]", 400),
    ]
    for body, status in attacks:
        answer = requests.post(url, data=body, headers={"Content-Type": "text/plain"}, timeout=10)
        assert answer.status_code == status, (body[:40], answer.text)
        assert "error" in answer.json()
    v2 = f"{server.url}/v2/models/raw/infer"
    absurd = {"inputs": [{"name": "input", "shape": [10**6, 10**6], "datatype": "FP32", "data": [1]}]}
    assert requests.post(v2, json=absurd, timeout=10).status_code == 400
    assert requests.post(url, json=[[5.2, 3.6, 1.4, 0.3]], timeout=10).json()[0] == [0]


def test_sigterm_with_a_stuck_handler_still_exits_and_leaves_nothing(
    tmp_path: Path, iris_onnx_model: Path
) -> None:
    root = slow_project(tmp_path / "p", iris_onnx_model, "  timeout: 60\n")
    server = Server(root, tmp_path / "serve.log", "--grace", "1").wait_ready()
    children = replica_pids(server.process.pid) | zygote_pids(server.process.pid)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(requests.post, f"{server.url}/d/slow", json={"forever": True}, timeout=30)
        wait_for(lambda: requests.get(f"{server.url}/d/slow", timeout=5).json()["replicas"]["busy"] == 1, 30)
        assert server.stop(60) == 0  # the grace (1 s), then the stuck replica killed 10 s later
    assert not [pid for pid in children if process_alive(int(pid))]
