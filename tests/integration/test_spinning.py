"""Spinning with real processes: while one client sends its requests one after another, its
replica does not sleep between its answer and the next request (replica/spinning.py,
gateway/queue.py). The gateway's half, and a replica without a ``SPIN`` frame sleeping:
tests/unit/replica/test_spinning.py; ``INFERD_SPIN_US=0``: tests/unit/gateway/test_queue_spin.py.
(With spinning off, a loaded machine can leave the replica without a sleep too: preempted between
its answer and its next read, it finds the next request there. Only the quiet case tells.)

A process's sleeps are the kernel's count of its main thread's voluntary context switches;
these tests compare that count with the number of requests, never a time.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Server, make_project, replica_pids

Serve = Callable[..., Server]
HANDLER = """
def pre_inference(sample, signature, metadata):
    return {"a": [[sample["i"], 1]], "b": [[0.5, 0.5]]}

def post_inference(prediction, signature, metadata):
    return prediction[0][0].tolist()
"""
REQUESTS = 200


def sleeps(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


def started(serve: Serve, root: Path, model: Path) -> tuple[Server, int]:
    server = serve(
        make_project(
            root,
            "- kind: deployment\n  name: s\n- kind: api\n  name: add\n  onnx:\n    model: add.onnx\n"
            "    request_handler: h.py\n",
            {"h.py": HANDLER},
            {"add.onnx": model},
        )
    )
    (replica,) = replica_pids(server.process.pid)
    return server, replica


def one_after_another(server: Server, count: int) -> None:
    with requests.Session() as session:
        for i in range(count):
            response = session.post(f"{server.url}/s/add", json={"i": i}, timeout=30)
            assert (response.status_code, response.json()) == (200, [i + 0.5, 1.5])


def test_one_clients_requests_find_the_replica_awake(
    serve: Serve, tmp_path: Path, two_input_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.1 s: the limit, far beyond this client's time between requests on a loaded machine
    monkeypatch.setenv("INFERD_SPIN_US", "100000")
    server, replica = started(serve, tmp_path / "project", two_input_model)
    one_after_another(server, 20)  # it has seen how soon requests come
    before = sleeps(replica)
    one_after_another(server, REQUESTS)
    # 0-12 here, with two busy loops on the two cores too; 385 with a replica that never spins
    assert sleeps(replica) - before < REQUESTS / 2


def test_a_silent_keep_alive_connection_beside_the_client_leaves_its_replica_awake(
    serve: Serve, tmp_path: Path, two_input_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A metrics scraper keeps its connection open between scrapes: once it has been silent for a
    # second (the gateway looks once a second), the one client's requests spin as if alone.
    monkeypatch.setenv("INFERD_SPIN_US", "100000")
    server, replica = started(serve, tmp_path / "project", two_input_model)
    scraper = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    try:
        scraper.request("GET", "/metrics")
        assert scraper.getresponse().read() and scraper.sock is not None
        deadline = time.monotonic() + 20
        while True:  # the gateway's next look at its connections comes within seconds
            one_after_another(server, 20)
            before = sleeps(replica)
            one_after_another(server, REQUESTS)
            slept = sleeps(replica) - before
            if slept < REQUESTS / 2 or time.monotonic() > deadline:
                break
        assert slept < REQUESTS / 2
        opened = scraper.sock
        scraper.request("GET", "/metrics")
        assert scraper.getresponse().status == 200 and scraper.sock is opened  # open all along
    finally:
        scraper.close()
