"""examples/text-generator on the operator: a predictor that yields words, streamed over SSE,
NDJSON and the Open Inference Protocol's generate extension, and shown by ``inferd get``."""

from __future__ import annotations

import json
import select
import subprocess
from pathlib import Path

import httpx
from httpx_sse import connect_sse

from tests.conftest import INFERD, example, make_project
from tests.integration.conftest import Inferd

BODY = {"text_input": "Beautiful", "parameters": {"max_tokens": 12, "seed": 7}}


GATED = """\
import os
import time


def predict(sample, metadata):
    yield "first"
    deadline = time.monotonic() + 60
    while not os.path.exists(sample["gate"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield "second"
"""


def test_text_generator_streams_words(inferd: Inferd, tmp_path: Path) -> None:
    project = example("text-generator")
    inferd.run("deploy", str(project))
    inferd.wait_status("generator", "live", timeout=120)
    v2 = f"{inferd.url}/v2/models/generator"
    with httpx.Client(timeout=60) as client:
        with connect_sse(client, "POST", v2 + "/generate_stream", json=BODY) as source:
            events = [event.json() for event in source.iter_sse()]
        whole = client.post(v2 + "/generate", json=BODY).json()
        # the README's curl -N -H 'Accept: text/event-stream' on the Cortex-style route
        sample = json.loads((project / "sample.json").read_text())
        with connect_sse(client, "POST", inferd.url + "/text/generator", json=sample) as source:
            words = [event.json() for event in source.iter_sse()]
    assert len(events) == 12
    assert {(event["model_name"], event["model_version"]) for event in events} == {("generator", "1")}
    assert all(isinstance(event["text_output"], str) and event["text_output"] for event in events)
    assert whole == {
        "model_name": "generator",
        "model_version": "1",
        "text_output": "".join(event["text_output"] for event in events),
    }
    assert len(words) == sample["max_tokens"] and all(isinstance(word, str) for word in words)
    predicted = inferd.run("predict", "generator", str(project / "sample.json")).stdout.splitlines()
    assert [json.loads(line) for line in predicted] == words  # the same seed: the same words
    shown = inferd.run("get", "generator").stdout
    assert "first item p50" in shown and "items per stream" in shown

    # `inferd predict` prints each item as it arrives: the second is made only once the first
    # is on the screen (a CLI that printed at the end would show nothing for a minute).
    gated = make_project(
        tmp_path / "gated",
        "- kind: deployment\n  name: gated\n- kind: api\n  name: gated\n  predictor:\n    path: gated.py\n",
        files={"gated.py": GATED, "sample.json": json.dumps({"gate": str(tmp_path / "gate")})},
    )
    inferd.run("deploy", str(gated))
    inferd.wait_status("gated", "live", timeout=120)
    with subprocess.Popen(
        [str(INFERD), "predict", "gated", str(gated / "sample.json")],
        env=inferd.env,
        stdout=subprocess.PIPE,
        text=True,
    ) as cli:
        assert cli.stdout is not None
        assert select.select([cli.stdout], [], [], 30)[0], "no item printed before the stream ended"
        assert cli.stdout.readline() == '"first"\n'
        (tmp_path / "gate").touch()
        assert cli.stdout.read() == '"second"\n'
        assert cli.wait(30) == 0
