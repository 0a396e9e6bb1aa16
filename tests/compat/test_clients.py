"""What Cortex v0.10's clients sent and read, answered by inferd: ``GET <api url>/signature``
(where v0.10.0 and v0.10.1 answered the model's inputs), a web page's CORS preflight naming
headers of its own (Cortex answered ``Access-Control-Allow-Headers: *``), and a body with NaN
for a missing value, as Python's ``json.dumps`` writes it (Cortex's Flask read it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Server, example, make_project, serve

__all__ = ["serve"]

PROJECT = """- kind: deployment
  name: iris

- kind: api
  name: classifier
  onnx:
    model: models/iris.onnx

- kind: api
  name: python
  predictor:
    path: predictor.py
"""


def test_signature_under_the_endpoint(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        PROJECT,
        {"predictor.py": "def predict(sample, metadata):\n    return sample\n"},
        {"models/iris.onnx": iris_onnx_model},
    )
    server = serve(project)
    answer = requests.get(f"{server.url}/iris/classifier/signature", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"signature": {"input": {"shape": [None, 4], "type": "float32"}}}
    assert answer.headers["Access-Control-Allow-Origin"] == "*"

    python = requests.get(f"{server.url}/iris/python/signature", timeout=10)
    assert python.status_code == 404 and "Python predictor" in python.json()["error"]
    assert requests.post(f"{server.url}/iris/classifier/signature", timeout=10).status_code == 405
    assert requests.get(f"{server.url}/iris/nothing/signature", timeout=10).status_code == 404
    # the API itself still answers predictions
    assert server.post("/iris/classifier", [[5.2, 3.6, 1.4, 0.3]]).json()[0] == [0]


def test_a_browser_may_send_headers_of_its_own(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: iris\n- kind: api\n  name: classifier\n  onnx:\n    model: m.onnx\n",
        models={"m.onnx": iris_onnx_model},
    )
    server = serve(project)
    preflight = requests.options(
        f"{server.url}/iris/classifier",
        headers={
            "Origin": "http://dashboard.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-client-version",
        },
        timeout=10,
    )
    assert preflight.status_code == 204
    allowed = [name.strip().lower() for name in preflight.headers["Access-Control-Allow-Headers"].split(",")]
    assert "*" in allowed  # any header, as Cortex allowed
    assert "authorization" in allowed  # which the wildcard never covers
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    answer = requests.post(
        f"{server.url}/iris/classifier",
        json=[[5.2, 3.6, 1.4, 0.3]],
        headers={"Origin": "http://dashboard.example", "X-Client-Version": "2.1"},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
    # A script reads only the answer headers CORS exposes: the length of a V2 answer's JSON part
    # (binary tensors follow it), Retry-After on a 503, the scheme a 401 asks for.
    binary = requests.post(
        f"{server.url}/v2/models/classifier/infer",
        json={
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.2, 3.6, 1.4, 0.3]}],
            "parameters": {"binary_data_output": True},
        },
        headers={"Origin": "http://dashboard.example"},
        timeout=10,
    )
    assert binary.status_code == 200 and "Inference-Header-Content-Length" in binary.headers
    exposed = {name.strip().lower() for name in binary.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"inference-header-content-length", "retry-after", "www-authenticate"} <= exposed


MISSING = """import math


def predict(sample, metadata):
    return {name: "missing" if math.isnan(value) else value for name, value in sample.items()}
"""


def test_nan_and_infinity_in_a_body(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        PROJECT,
        {"predictor.py": MISSING},
        {"models/iris.onnx": iris_onnx_model},
    )
    server = serve(project)
    # what a 2019 client sent for a row with a missing value: requests.post(url, data=json.dumps(row))
    row = {"sepal_length": 5.2, "sepal_width": float("nan"), "petal_length": float("inf")}
    body = json.dumps(row)
    assert "NaN" in body and "Infinity" in body
    answer = requests.post(f"{server.url}/iris/python", data=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sepal_length": 5.2, "sepal_width": "missing", "petal_length": None}
    # the model takes NaN too (a tree model reads it as missing); the answer is JSON
    rows = requests.post(f"{server.url}/iris/classifier", data="[[5.2, NaN, 1.4, -Infinity]]", timeout=10)
    assert rows.status_code == 200, rows.text
    still_bad = requests.post(f"{server.url}/iris/python", data="{nan: 1}", timeout=10)
    assert still_bad.status_code == 400 and "malformed JSON" in still_bad.json()["error"]


@pytest.mark.tensorflow
def test_tensorflow_signature_under_the_endpoint(tmp_path: Path, serve: Callable[..., Server]) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: iris\n- kind: api\n  name: tf\n  tensorflow:\n    model: models/iris\n",
        models={"models/iris": example("iris-tensorflow") / "models" / "iris"},
    )
    answer = requests.get(f"{serve(project).url}/iris/tf/signature", timeout=10)
    assert answer.status_code == 200, answer.text
    features = ("petal_length", "petal_width", "sepal_length", "sepal_width")
    assert answer.json() == {"signature": {name: {"shape": [-1], "type": "float32"} for name in features}}
