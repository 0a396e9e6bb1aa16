"""Property-based fuzzing of the data plane: generated bodies for the Cortex route, V2 infer and
TF Serving predict, against real replicas. Whatever a client sends, the answer is a 2XX or a
4XX whose JSON names the problem (no traceback, no path of ours), and no replica is lost.

The values are the ones that found faults: text holding a lone surrogate (JSON's "\\ud800"),
integers beyond 64 bits, NaN and Infinity, shapes with a 0 beside a huge dimension.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import V2_TYPES, Server, make_project, replica_pids

ECHO = "def predict(sample, metadata):\n    return sample\n"
NAMES = ["input", "x", "in_fp32", "in_bytes", "in_bool", "\ud800", "", "\x00"]

_text = st.one_of(st.sampled_from(NAMES), st.text(max_size=6))
_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**64, -(2**63) - 1, 10**30, 0, 1, -0.0, 65505, 3.5e38, 5e-324]),
    st.floats(),
)
_value = st.recursive(
    st.one_of(st.none(), st.booleans(), _number, _text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=12,
)
_shape = st.one_of(
    st.lists(st.one_of(st.integers(0, 3), st.sampled_from([2**62, 2**64, -1, 1.5, "2"])), max_size=3),
    st.lists(st.just(0), min_size=33, max_size=40),
    _value,
)
_tensor = st.fixed_dictionaries(
    {
        "name": _text,
        "datatype": st.one_of(st.sampled_from([*V2_TYPES, "BF16"]), _text),
        "shape": _shape,
        "data": _value,
    },
    optional={"parameters": st.one_of(st.fixed_dictionaries({"binary_data_size": _number}), _value)},
)
_v2 = st.fixed_dictionaries(
    {"inputs": st.lists(_tensor, max_size=2)},
    optional={
        "id": _value,
        "parameters": st.one_of(
            st.fixed_dictionaries({"signature_name": _value, "binary_data_output": _value}), _value
        ),
        "outputs": st.lists(
            st.fixed_dictionaries({"name": _text}, optional={"parameters": _value}), max_size=2
        ),
    },
)
_tf = st.one_of(
    st.fixed_dictionaries({"instances": _value}, optional={"signature_name": _value}),
    st.fixed_dictionaries({"inputs": _value}, optional={"signature_name": _value}),
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, iris_onnx_model: Path, all_types_model: Path
) -> Iterator[Server]:
    root = make_project(
        tmp_path_factory.mktemp("datafuzz") / "project",
        "- kind: deployment\n  name: f\n"
        "- kind: api\n  name: iris\n  onnx:\n    model: iris.onnx\n"
        "- kind: api\n  name: types\n  onnx:\n    model: all.onnx\n"
        "- kind: api\n  name: echo\n  predictor:\n    path: echo.py\n",
        {"echo.py": ECHO},
        {"iris.onnx": iris_onnx_model, "all.onnx": all_types_model},
    )
    running = Server(root, tmp_path_factory.mktemp("datafuzzlogs") / "serve.log").wait_ready()
    yield running
    running.stop()


def _answered_well(answer: requests.Response) -> None:
    assert answer.status_code < 500, (answer.request.body, answer.text[:300])
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert error and "Traceback" not in error and "/inferd/" not in error, error


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()  # a lone surrogate as its escape, NaN as NaN, as clients write


def _nulled(value: Any) -> Any:
    """``value`` as the Cortex route answers it: NaN and the infinities are null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_nulled(item) for item in value]
    if isinstance(value, dict):
        return {key: _nulled(item) for key, item in value.items()}
    return value


def test_generated_tensor_requests_are_answered_and_lose_no_replica(server: Server) -> None:
    before = replica_pids(server.process.pid)
    session = requests.Session()

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["iris", "types"]), _v2, _tf)
    def check(model: str, v2: dict[str, Any], tf: dict[str, Any]) -> None:
        _answered_well(session.post(f"{server.url}/v2/models/{model}/infer", data=_body(v2), timeout=30))
        _answered_well(session.post(f"{server.url}/v1/models/{model}:predict", data=_body(tf), timeout=30))

    check()
    assert replica_pids(server.process.pid) == before
    answer = session.post(
        f"{server.url}/v2/models/iris/infer",
        json={
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.2, 3.6, 1.4, 0.3]}]
        },
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [0]


def test_generated_cortex_bodies_are_answered_and_echoed_as_sent(server: Server) -> None:
    before = replica_pids(server.process.pid)
    session = requests.Session()

    @settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_value)
    def check(sample: Any) -> None:
        _answered_well(session.post(f"{server.url}/f/iris", data=_body(sample), timeout=30))
        echoed = session.post(f"{server.url}/f/echo", data=_body(sample), timeout=30)
        assert echoed.status_code == 200, echoed.text
        # as sent (integers beyond 64 bits too), NaN and Infinity as null (README, Cortex v0.10)
        assert json.loads(echoed.content) == _nulled(sample)

    check()
    assert replica_pids(server.process.pid) == before
