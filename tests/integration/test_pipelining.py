"""Pipelining: under load, a fast API's replicas get several requests per write.

Each answer must still reach the client that asked (answers come back in order, one per
request), whatever the grouping; ``INFERD_PIPELINE=1`` turns the grouping off.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, make_project

Serve = Callable[..., Server]

HANDLER = """
def pre_inference(sample, signature, metadata):
    i = sample["i"]
    return {"a": [[i, 2 * i]], "b": [[0.5, 0.25]]}

def post_inference(prediction, signature, metadata):
    return {"sum": prediction[0][0].tolist()}
"""
CLIENTS = 16
EACH = 60


def pipelined(server: Server) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inferd_pipelined_requests_total"
    )


def project(root: Path, model: Path) -> Path:
    return make_project(
        root,
        "- kind: deployment\n  name: p\n- kind: api\n  name: add\n  onnx:\n    model: add.onnx\n"
        "    request_handler: h.py\n  compute:\n    init_replicas: 2\n    max_replicas: 2\n",
        {"h.py": HANDLER},
        {"add.onnx": model},
    )


def hammer(server: Server) -> list[tuple[int, int, object]]:
    """CLIENTS keep-alive clients, each sending EACH requests with its own numbers."""

    def client(number: int) -> list[tuple[int, int, object]]:
        seen = []
        with requests.Session() as session:
            for step in range(EACH):
                i = number * 1000 + step
                response = session.post(f"{server.url}/p/add", json={"i": i}, timeout=30)
                seen.append((i, response.status_code, response.json()))
        return seen

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [answer for answers in pool.map(client, range(CLIENTS)) for answer in answers]


def test_each_client_gets_its_own_answer_when_requests_are_pipelined(
    serve: Serve, tmp_path: Path, two_input_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Grouping needs answers under 1 ms: a busy machine (other tests beside this one) can miss
    # that line, so it is moved out of reach here; this test checks the answers of the groups.
    monkeypatch.setenv("INFERD_PIPELINE_BELOW_MS", "1000")
    server = serve(project(tmp_path / "project", two_input_model))
    answers = hammer(server)
    assert len(answers) == CLIENTS * EACH
    for i, status, body in answers:
        assert status == 200
        assert body == {"sum": [i + 0.5, 2 * i + 0.25]}
    assert pipelined(server) > 0  # the grouping did happen: the answers above went through it


def test_pipelining_can_be_turned_off(
    serve: Serve, tmp_path: Path, two_input_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERD_PIPELINE", "1")
    server = serve(project(tmp_path / "project", two_input_model))
    answers = hammer(server)
    assert all(status == 200 and body == {"sum": [i + 0.5, 2 * i + 0.25]} for i, status, body in answers)
    assert pipelined(server) == 0
