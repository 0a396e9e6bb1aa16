"""Payload logs through the real operator: sampled requests and answers, read back with the CLI."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import INFERD, Server, make_project, wait_for, whole_lines
from tests.integration.conftest import Inferd

PREDICTOR = """
def predict(sample, metadata):
    x = sample["x"]
    if metadata.get("candidate"):  # wrong on every fourth input, off by 1e-6 on the others
        return {"double": x * 2 + (1 if x % 4 == 0 else 1e-6)}
    return {"double": x * 2}
"""

YAML = """
- kind: deployment
  name: shop
- kind: api
  name: recorded
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
  payload_log: {sample: 1.0}
- kind: api
  name: unrecorded
  predictor: {path: predictor.py}
  compute: {cpu: 0.1}
- kind: api
  name: candidate
  predictor: {path: predictor.py, metadata: {candidate: true}}
  compute: {cpu: 0.1}
  payload_log: {sample: 1.0}
- kind: traffic_splitter
  name: front
  apis:
    - {name: recorded, weight: 90}
    - {name: candidate, weight: 10}
"""


def test_record_replay_and_promote(inferd: Inferd, tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", YAML, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    inferd.wait_status("recorded", "live")
    inferd.wait_status("unrecorded", "live")
    sent: dict[str, int] = {}
    # one body past the size the writer keeps as text, unparsed (gateway/payloads.py TEXT_BYTES)
    large = {"x": 7, "pad": "é" * 40_000}
    with requests.Session() as session:
        for x in range(50):
            body = large if x == 7 else {"x": x}
            response = session.post(inferd.url + "/shop/recorded", json=body, timeout=30)
            assert response.status_code == 200
            sent[response.headers["X-Request-ID"]] = x
            assert session.post(inferd.url + "/shop/unrecorded", json={"x": x}, timeout=30).ok

    def recorded() -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] = inferd.json("payloads", "recorded", "-n", "1000")
        return records if len(records) >= 50 else None

    records = wait_for(recorded, 30, "50 payload records")
    assert len(records) == 50
    version = inferd.api("recorded")["replicas"][0]["version"]
    for record in records:
        x = sent[record["request_id"]]
        assert record["request"] == {"json": large if x == 7 else {"x": x}}
        assert record["response"] == {"json": {"double": 2 * x}}
        assert record["status"] == 200 and record["latency_ms"] > 0
        assert record["api"] == "shop/recorded" and record["version"] == version
    assert len(inferd.json("payloads", "recorded", "-n", "5")) == 5
    assert inferd.json("payloads", "recorded") == records[-20:]  # README: the last 20 by default
    assert inferd.json("payloads", "unrecorded") == []
    table = inferd.run("payloads", "recorded", "-n", "3").stdout.splitlines()
    assert table[0].split()[:4] == ["request", "id", "status", "latency"] and len(table) == 4

    # Replay: against an identical copy everything agrees; against the candidate, the quarter
    # of inputs it gets wrong (its 1e-6 differences are within the tolerance).
    # Replay reads each answer's latency as the gateway measured it, as the recorded one was.
    timed = requests.post(
        inferd.url + "/shop/unrecorded", json={"x": 1}, headers={"X-Inferd-Timing": "1"}, timeout=30
    )
    assert timed.headers["Server-Timing"].startswith("inferd;dur=") and timed.json() == {"double": 2}
    assert (
        "Server-Timing"
        not in requests.post(inferd.url + "/shop/unrecorded", json={"x": 1}, timeout=30).headers
    )
    same = inferd.json("replay", "recorded", "--against", "unrecorded")
    assert (same["requests"], same["agreement"], same["disagreements"], same["errors"]) == (50, 1.0, 0, 0)
    assert set(same["latency_ms"]["recorded"]) == {"p50", "p99"} and same["latency_ms"]["replayed"]["p50"] > 0
    inferd.wait_status("candidate", "live")
    differs = inferd.json("replay", "recorded", "--against", "candidate", "--tolerance", "1e-3")
    wrong = sum(1 for x in range(50) if x % 4 == 0)
    assert differs["agreement"] == (50 - wrong) / 50 and differs["disagreements"] == wrong
    strict = inferd.json("replay", "recorded", "--against", "candidate", "-n", "20")
    assert strict["requests"] == 20 and strict["agreement"] == 0.0
    text = inferd.run("replay", "recorded", "--against", "candidate", "--tolerance", "1e-3").stdout
    assert "agreement 74.0%" in text and '{"x": 0}' in text
    # The replays are not real traffic: the candidate's own payload log keeps none of them. A
    # client's own X-Inferd-Replay is no replay's: its request is recorded (it hid from the log).
    direct = requests.post(inferd.url + "/shop/candidate", json={"x": 1000}, timeout=30)
    posing = requests.post(
        inferd.url + "/shop/candidate", json={"x": 1001}, headers={"X-Inferd-Replay": "1"}, timeout=30
    )

    def candidates() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = inferd.json("payloads", "candidate")
        return found if len(found) >= 2 else None

    candidate_log = wait_for(candidates, 30, "2 records")
    assert [record["request_id"] for record in candidate_log] == [
        direct.headers["X-Request-ID"],
        posing.headers["X-Request-ID"],
    ]

    # Promote refuses below --min-agreement with the numbers, and applies above it.
    refused = inferd.run("promote", "front", "candidate", "--min-agreement", "0.9", check=False)
    assert refused.returncode != 0
    assert "agreed 74.0% (37 of 50 requests), below --min-agreement 90.0%" in refused.stderr
    # A replay judges the version it saw: a candidate deployed since is replayed again first.
    make_project(tmp_path / "shop", YAML.replace("candidate: true", "candidate: true, v: 2"), {})
    inferd.run("deploy", str(project))
    inferd.wait_status("candidate", "live")
    stale = inferd.run("promote", "front", "candidate", "--min-agreement", "0.7", check=False)
    assert stale.returncode != 0 and "replay it again" in stale.stderr, stale.stderr
    # A comparison that cannot say which version answered (no answer came from a replica still
    # running when it was recorded) judges none: it was taken as judging the version running now.
    last = inferd.home / "replays" / "shop" / "candidate.json"
    last.write_text(json.dumps({**json.loads(last.read_text()), "version": "", "agreement": 1.0}))
    unknown = inferd.run("promote", "front", "candidate", "--min-agreement", "0.7", check=False)
    assert unknown.returncode != 0 and "does not say which version" in unknown.stderr, unknown.stderr
    inferd.json("replay", "recorded", "--against", "candidate", "--tolerance", "1e-3")
    applied = inferd.run("promote", "front", "candidate", "--min-agreement", "0.7")
    assert applied.stdout.strip() == "splitter 'front' now sends 100% of its requests to api 'candidate'"
    with requests.Session() as session:
        answered = {
            session.post(inferd.url + "/shop/front", json={"x": 1}, timeout=30).headers["X-Inferd-Api"]
            for _ in range(30)
        }
    assert answered == {"candidate"}
    assert "100%" in inferd.run("get").stdout

    # The promotion is recorded: an operator restarted with `down` / `up` keeps it.
    inferd.run("down")
    inferd.run("up")
    inferd.wait_status("candidate", "live")
    with requests.Session() as session:
        after = {
            session.post(inferd.url + "/shop/front", json={"x": 1}, timeout=30).headers["X-Inferd-Api"]
            for _ in range(20)
        }
    assert after == {"candidate"}


def test_inferd_serve_writes_payload_logs(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: shop\n- kind: api\n  name: recorded\n"
        "  predictor: {path: predictor.py}\n  payload_log: {sample: 1.0}\n",
        {"predictor.py": PREDICTOR},
    )
    server = serve(project)
    for x in range(3):
        assert server.post("/shop/recorded", {"x": x}).json() == {"double": x * 2}
    log = tmp_path / "home" / "payloads" / "shop" / "recorded.jsonl"

    def recorded() -> list[Any] | None:
        lines = whole_lines(log)
        return [json.loads(line) for line in lines] if len(lines) == 3 else None

    records = wait_for(recorded, 30, "three payload records")
    assert [r["request"]["json"] for r in records] == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert [r["response"]["json"] for r in records] == [{"double": 0}, {"double": 2}, {"double": 4}]
    # `inferd payloads` reads them while only `inferd serve` runs (it said "the operator is not running").
    for name in ("recorded", "shop/recorded"):
        shown = subprocess.run(
            [str(INFERD), "payloads", name, "-n", "2", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert [r["request"]["json"] for r in json.loads(shown.stdout)] == [{"x": 1}, {"x": 2}]
    missing = subprocess.run([str(INFERD), "payloads", "nothing"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "operator is not running" in missing.stderr


ECHO = """
def predict(sample, metadata):
    return {"echo": sample["text"]}
"""


def test_a_payload_log_keeps_whole_records_and_rotates_at_its_size(inferd: Inferd, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "shop",
        "- kind: deployment\n  name: shop\n- kind: api\n  name: echo\n  predictor: {path: predictor.py}\n"
        "  compute: {cpu: 0.1}\n  payload_log: {sample: 1.0, max_size: 8Ki}\n",
        {"predictor.py": ECHO},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("echo", "live")
    # Each record is about 2.5 KB (the text twice), more than an eighth of the log's size.
    texts = [f"{n:03d}" + "x" * 1200 for n in range(12)]
    with requests.Session() as session:
        for text in texts:
            response = session.post(inferd.url + "/shop/echo", json={"text": text}, timeout=30)
            assert response.status_code == 200

    def newest() -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] = inferd.json("payloads", "echo", "-n", "1000")
        return records if records and records[-1]["request"]["json"]["text"] == texts[-1] else None

    records = wait_for(newest, 30, "the last request's record")
    # Every record kept is whole, and the newest are kept in order: the log and one older file
    # of at most 8 KiB each (plus the record that crossed it) hold the last few.
    kept = [r["request"]["json"]["text"] for r in records]
    assert kept == texts[-len(kept) :] and 3 <= len(kept) < len(texts)
    assert all(r["response"] == {"json": {"echo": r["request"]["json"]["text"]}} for r in records)
    files = sorted(path.name for path in (inferd.home / "payloads" / "shop").iterdir())
    assert files == ["echo.jsonl", "echo.jsonl.1"]
    for name in files:
        lines = (inferd.home / "payloads" / "shop" / name).read_text().splitlines()
        assert all(json.loads(line)["api"] == "shop/echo" for line in lines)
        assert (inferd.home / "payloads" / "shop" / name).stat().st_size <= 8192 + 4096
    # A deleted API's payload log stays until `inferd prune`, and `inferd payloads` still reads it.
    inferd.run("delete", "echo")
    assert inferd.json("payloads", "echo", "-n", "1000") == records


TENSORS = """
- kind: deployment
  name: tensors
- kind: api
  name: recorded
  onnx: {model: models/add.onnx}
  compute: {cpu: 0.1}
  payload_log: {sample: 1.0}
  shadow: {api: copy, percent: 100}
- kind: api
  name: copy
  onnx: {model: models/add.onnx}
  compute: {cpu: 0.1}
- kind: api
  name: candidate
  onnx: {model: models/relu.onnx}
  compute: {cpu: 0.1}
"""


def _relu_model(path: Path) -> Path:
    """Like the add model, but sum = a + relu(b): it differs where b is negative."""
    from onnx import TensorProto, helper, save_model

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 2])
    out = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 2])
    nodes = [helper.make_node("Relu", ["b"], ["rb"]), helper.make_node("Add", ["a", "rb"], ["sum"])]
    model = helper.make_model(
        helper.make_graph(nodes, "relu", [a, b], [out]), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    save_model(model, str(path))
    return path


def test_v2_and_tf_serving_requests_are_replayed_and_shadowed_on_their_own_routes(
    inferd: Inferd, tmp_path: Path, two_input_model: Path
) -> None:
    relu = _relu_model(tmp_path / "relu.onnx")
    models = {"models/add.onnx": two_input_model, "models/relu.onnx": relu}
    project = make_project(tmp_path / "tensors", TENSORS, models=models)
    inferd.run("deploy", str(project))
    for name in ("recorded", "copy", "candidate"):
        inferd.wait_status(name, "live")
    inputs = range(-2, 8)  # the candidate differs on -2 and -1: a fifth of them

    def v2(x: int) -> dict[str, Any]:
        tensors = [("a", [1, 2]), ("b", [x, x])]
        return {
            "id": f"r{x}",
            "inputs": [{"name": n, "shape": [1, 2], "datatype": "FP32", "data": d} for n, d in tensors],
        }

    routes: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
        ("/tensors/recorded", lambda x: {"a": [[1, 2]], "b": [[x, x]]}),
        ("/v2/models/recorded/infer", v2),
        ("/v1/models/recorded:predict", lambda x: {"instances": [{"a": [1, 2], "b": [x, x]}]}),
        ("/v1/models/tensors.recorded:predict", lambda x: {"inputs": {"a": [[1, 2]], "b": [[x, x]]}}),
    ]
    with requests.Session() as session:
        for path, body in routes:
            for x in inputs:
                assert session.post(inferd.url + path, json=body(x), timeout=30).status_code == 200
    count = len(routes) * len(inputs)

    def shadowed() -> list[dict[str, Any]] | None:
        records: list[dict[str, Any]] = inferd.json("payloads", "recorded", "-n", "1000")
        done = len(records) == count and all("shadow" in r for r in records)
        return records if done else None

    records = wait_for(shadowed, 60, "every request's record with its shadow's answer")
    assert {r["protocol"] for r in records} == {"cortex", "v2", "tfserving"}
    # An identical shadow agrees on every protocol (a V2 answer names its model: not compared).
    assert inferd.api("recorded")["shadow"]["agreed"] == count
    assert inferd.json("replay", "recorded", "--shadow")["agreement"] == 1.0
    # Each request is sent again over the route it came by, to the other API's model.
    same = inferd.json("replay", "recorded", "--against", "copy")
    assert (same["requests"], same["agreement"], same["errors"]) == (count, 1.0, 0)
    differs = inferd.json("replay", "recorded", "--against", "candidate")
    assert (differs["requests"], differs["agreement"]) == (count, 0.8)
    assert differs["disagreements"] == count // 5 and differs["errors"] == 0
    # A deleted API's payload log stays, and is replayed as before (it said "no API named").
    inferd.run("delete", "recorded")
    wait_for(
        lambda: "tensors/recorded" not in {f"{a['deployment']}/{a['name']}" for a in inferd.json("get")},
        60,
        "the API to be deleted",
    )
    assert inferd.json("replay", "recorded", "--against", "candidate")["agreement"] == 0.8


def test_a_payload_log_samples_about_its_fraction_of_requests(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: shop\n- kind: api\n  name: sampled\n"
        "  predictor: {path: predictor.py}\n  payload_log: {sample: 0.1}\n",
        {"predictor.py": PREDICTOR},
    )
    server = serve(project)
    sent = {}
    with requests.Session() as session:
        for x in range(2000):
            answer = session.post(server.url + "/shop/sampled", json={"x": x}, timeout=30)
            assert answer.status_code == 200
            sent[answer.headers["X-Request-ID"]] = x
    assert server.stop() == 0  # a server that stops writes the records it holds first
    records = [
        json.loads(line) for line in whole_lines(tmp_path / "home" / "payloads" / "shop" / "sampled.jsonl")
    ]
    # 2,000 requests at 0.1: 200 expected, sigma 13.4; 5 sigma either side
    assert 133 <= len(records) <= 267, len(records)
    assert all(r["request"]["json"] == {"x": sent[r["request_id"]]} for r in records)


NESTED = """
def predict(sample, metadata):
    if sample == "deep":
        answer = 1
        for _ in range(254):  # as deep as an answer goes
            answer = [answer]
        return answer
    return {"got": "a list" if isinstance(sample, list) else sample}
"""


def test_a_body_nested_as_deep_as_json_goes_is_recorded_and_the_log_goes_on(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An answer 254 levels deep (the most an answer holds), or a client's body as deep, is JSON
    # the client got or sent; inside a record it is deeper than orjson writes: the writer died
    # on it, no record after it was ever written, and `inferd serve` ended with a traceback.
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: shop\n- kind: api\n  name: nested\n"
        "  predictor: {path: predictor.py}\n  payload_log: {sample: 1.0}\n",
        {"predictor.py": NESTED},
    )
    server = serve(project)
    deep = server.post("/shop/nested", "deep")
    assert deep.status_code == 200
    sent = "[" * 300 + "1" + "]" * 300
    assert server.post("/shop/nested", data=sent.encode()).json() == {"got": "a list"}
    assert server.post("/shop/nested", {"x": 1}).json() == {"got": {"x": 1}}
    log = tmp_path / "home" / "payloads" / "shop" / "nested.jsonl"
    records = wait_for(
        lambda: [json.loads(line) for line in whole_lines(log)] if len(whole_lines(log)) == 3 else None,
        30,
        "three payload records",
    )
    # what cannot be written as JSON inside the record is its base64, as the README says of
    # bodies that are not JSON: the bytes the client got, and sent
    assert records[0]["request"] == {"json": "deep"}  # the other body of the record stays JSON
    assert base64.b64decode(records[0]["response"]["base64"]) == deep.content
    assert base64.b64decode(records[1]["request"]["base64"]) == sent.encode()
    assert records[2]["response"] == {"json": {"got": {"x": 1}}}
    shown = subprocess.run(
        [str(INFERD), "payloads", "nested", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)) == 3
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()


WIDE = """
def predict(sample, metadata):
    return {"id": 2**70, "sent": sample["n"]}
"""


def test_an_integer_beyond_64_bits_is_recorded_as_the_client_sent_and_got_it(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client sends and gets these integers digit for digit (README); the record held the
    # float orjson reads (1.1805916207174113e+21), which `inferd replay` sent and compared.
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: shop\n- kind: api\n  name: wide\n"
        "  predictor: {path: predictor.py}\n  payload_log: {sample: 1.0}\n",
        {"predictor.py": WIDE},
    )
    server = serve(project)
    sent = b'{"n": 123456789012345678901234}'
    answer = server.post("/shop/wide", data=sent, headers={"Content-Type": "application/json"})
    assert json.loads(answer.text) == {"id": 2**70, "sent": 123456789012345678901234}
    log = tmp_path / "home" / "payloads" / "shop" / "wide.jsonl"
    wait_for(lambda: whole_lines(log), 30, "a payload record")
    shown = subprocess.run(
        [str(INFERD), "payloads", "wide", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    [record] = json.loads(shown.stdout)
    assert record["request"] == {"json": {"n": 123456789012345678901234}}
    assert record["response"] == {"json": {"id": 2**70, "sent": 123456789012345678901234}}


def test_an_agreement_short_of_whole_never_reads_as_100_percent(inferd: Inferd, tmp_path: Path) -> None:
    # Was: 3,999 answers of 4,000 agreeing read "agreement 100.0%, 1 disagreements", and a promote
    # with --min-agreement 1 was refused as "agreed 100.0% (...), below --min-agreement 100.0%".
    from inferd.gateway.payloads import PayloadBuffer
    from inferd.operator.payloads import PayloadWriter

    project = make_project(tmp_path / "shop", YAML, {"predictor.py": PREDICTOR})
    inferd.run("deploy", str(project))
    version = inferd.api("candidate")["version"]
    # What 4,000 requests to 'unrecorded' with 'candidate' as its shadow leave in its payload log
    # (written by the operator's own writer): the shadow disagrees on one of them.
    writer = PayloadWriter(inferd.home, PayloadBuffer())
    records = []
    for x in range(4000):
        answer = {"json": {"double": 2 * x}}
        shadow = {"json": {"double": 2 * x + (1 if x == 7 else 0)}}
        records.append(
            {
                "request_id": str(x),
                "status": 200,
                "latency_ms": 1.0,
                "version": "v1",
                "protocol": "cortex",
                "request": {"json": {"x": x}},
                "response": answer,
                "shadow": {"api": "shop/candidate", "version": version, "status": 200, "latency_ms": 1.0}
                | {"response": shadow},
            }
        )
    writer.write([("shop/unrecorded", 1 << 30, record) for record in records])
    writer.close()
    compared = inferd.run("replay", "unrecorded", "--shadow", "-n", "4000").stdout.splitlines()[0]
    assert compared == (
        "4000 requests of 'shop/unrecorded' compared with its shadow 'shop/candidate': agreement 99.98%, "
        "1 disagreements, 0 errors, 0 status changes"
    )
    refusals = {
        "1": "agreed 99.98% (3999 of 4000 requests), below --min-agreement 100.00%",
        "0.9999": "agreed 99.98% (3999 of 4000 requests), below --min-agreement 99.99%",
    }
    for least, says in refusals.items():
        refused = inferd.run("promote", "front", "candidate", "--min-agreement", least, check=False)
        assert refused.returncode == 1 and refused.stderr.strip().endswith(says), refused.stderr
    applied = inferd.run("promote", "front", "candidate", "--min-agreement", "0.9997").stdout
    assert applied == "splitter 'front' now sends 100% of its requests to api 'candidate'\n"
