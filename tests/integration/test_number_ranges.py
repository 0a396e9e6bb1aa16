"""Numbers a model input cannot hold exactly, on every route of a real `inferd serve`: a 400
naming the input and the range, never a silently changed value.

numpy truncates a float cast to an integer: before, ``-9223372036854775809`` (which orjson reads
as a float) reached an int64 input as ``-2**63`` and ``1.5`` as 1. An integer beyond 64 bits is
named as the client wrote it, not as the float orjson made of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import Server, make_project

INPUTS = {"i64": "INT64", "i32": "INT32", "u8": "UINT8", "f32": "FP32", "u64": "UINT64"}
GOOD = {"i64": "[1]", "i32": "[1]", "u8": "[1]", "f32": "[1]", "u64": "[1]"}
NUMPY_NAMES = {"INT64": "int64", "INT32": "int32", "UINT8": "uint8", "FP32": "float32", "UINT64": "uint64"}
ROUTES = ("/d/ids", "/v2/models/ids/infer", "/v1/models/ids:predict")
INT64_RANGE = "{T}'s range (-9223372036854775808 to 9223372036854775807)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from onnx import TensorProto, helper, save_model

    kinds = {
        "i64": TensorProto.INT64,
        "i32": TensorProto.INT32,
        "u8": TensorProto.UINT8,
        "f32": TensorProto.FLOAT,
        "u64": TensorProto.UINT64,
    }
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [f"{name}_out"]) for name in kinds],
        "identities",
        [helper.make_tensor_value_info(name, kind, [None]) for name, kind in kinds.items()],
        [helper.make_tensor_value_info(f"{name}_out", kind, [None]) for name, kind in kinds.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root = tmp_path_factory.mktemp("numbers")
    save_model(model, str(root / "ids.onnx"))
    project = make_project(
        root / "p",
        "- kind: deployment\n  name: d\n- kind: api\n  name: ids\n  onnx:\n    model: ids.onnx\n",
        models={"ids.onnx": root / "ids.onnx"},
    )
    running = Server(project, root / "serve.log").wait_ready()
    yield running
    running.stop()


def _bodies(name: str, data: str) -> dict[str, bytes]:
    """The same values for input ``name`` (the other inputs 1) on the three routes, as raw JSON:
    integers beyond 64 bits cannot go through a JSON library that reads them as floats."""
    values = {**GOOD, name: data}
    cortex = "{" + ", ".join(f'"{key}": {value}' for key, value in values.items()) + "}"
    v2 = ", ".join(
        f'{{"name": "{key}", "datatype": "{INPUTS[key]}", "shape": [{value.count(",") + 1}], '
        f'"data": {value}}}'
        for key, value in values.items()
    )
    return {
        "/d/ids": cortex.encode(),
        "/v2/models/ids/infer": ('{"inputs": [' + v2 + "]}").encode(),
        "/v1/models/ids:predict": ('{"inputs": ' + cortex + "}").encode(),
    }


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("i64", "[9223372036854775808]", "9223372036854775808 is out of " + INT64_RANGE),
        ("i64", "[1, -9223372036854775809]", "-9223372036854775809 is out of " + INT64_RANGE),
        ("i64", "[1180591620717411303424]", "1180591620717411303424 is out of " + INT64_RANGE),
        ("i64", "[1.5]", "1.5 is not a whole number, as {T} needs"),
        ("i64", "[9007199254740992.0]", "9007199254740992.0 is not exact as {T}"),
        ("u64", "[0, -1]", "-1 is out of {T}'s range (0 to 18446744073709551615)"),
        ("i32", "[2147483648]", "2147483648 is out of {T}'s range (-2147483648 to 2147483647)"),
        ("i32", "[1180591620717411303424]", "out of {T}'s range (-2147483648 to 2147483647)"),
        ("u8", "[300]", "300 is out of {T}'s range (0 to 255)"),
        ("u8", "[-1]", "-1 is out of {T}'s range (0 to 255)"),
        ("f32", "[1e39]", "1e+39 is out of {T}'s range (-3.4028235e+38 to 3.4028235e+38)"),
    ],
)
def test_a_number_the_input_cannot_hold_is_a_400_naming_the_input_and_the_range(
    server: Server, name: str, data: str, message: str
) -> None:
    for path, body in _bodies(name, data).items():
        answer = requests.post(server.url + path, data=body, timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        label = INPUTS[name] if path.startswith("/v2/") else NUMPY_NAMES[INPUTS[name]]  # INT64 / int64
        assert f"input '{name}'" in error and message.format(T=label) in error, (path, error)


def test_the_edges_of_each_range_are_answered_exactly(server: Server) -> None:
    edges = {
        "i64": "[-9223372036854775808, 9223372036854775807]",
        "i32": "[-2147483648, 2147483647]",
        "u8": "[0, 255]",
        "f32": "[3.4e38, -3.4e38]",
        "u64": "[0, 18446744073709551615]",
    }
    cortex = "{" + ", ".join(f'"{key}": {value}' for key, value in edges.items()) + "}"
    answer = requests.post(server.url + "/d/ids", data=cortex.encode(), timeout=10)
    assert answer.status_code == 200, answer.text
    outputs = answer.json()
    assert outputs[0] == [-(2**63), 2**63 - 1]
    assert outputs[1] == [-(2**31), 2**31 - 1]
    assert outputs[2] == [0, 255]
    assert outputs[4] == [0, 2**64 - 1]


def _outputs(path: str, answer: requests.Response) -> dict[str, Any]:
    """Each output's values by input name, whatever the route's answer looks like."""
    found = answer.json()
    if path.startswith("/v2/"):
        return {item["name"].removesuffix("_out"): item["data"] for item in found["outputs"]}
    if path.startswith("/v1/"):
        return {name.removesuffix("_out"): values for name, values in found["outputs"].items()}
    return dict(zip(INPUTS, found, strict=True))


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        # numpy reads integers on both sides of int64's maximum as floats, which made the
        # largest UINT64 values a 400 beside small ones (tritonclient sends such lists)
        ("u64", "[0, 18446744073709551615]", [0, 2**64 - 1]),
        ("u64", "[9223372036854775808, 1]", [2**63, 1]),
        # beside a float, an integer was read as a float: 2**53 + 1 became 2**53 (then a 400)
        ("i64", "[9007199254740993, 0.0]", [2**53 + 1, 0]),
    ],
)
def test_integers_beside_other_numbers_are_answered_exactly(
    server: Server, name: str, data: str, expected: list[int]
) -> None:
    for path, body in _bodies(name, data).items():
        answer = requests.post(server.url + path, data=body, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        values = _outputs(path, answer)[name]
        assert values == expected, (path, values)


@pytest.mark.parametrize(
    ("data", "what", "routes"),
    [
        ("[null, 1]", "null", ROUTES[1:]),
        ('["1", 2]', "text", ROUTES[1:]),
        ('[{"b64": "MQ=="}, 2]', "text is not a number (b'1')", ROUTES[2:]),  # TF Serving's binary "1"
    ],
)
def test_a_protocol_route_takes_numbers_only_for_a_number_input(
    server: Server, data: str, what: str, routes: tuple[str, ...]
) -> None:
    """V2 and TF Serving tensors are typed: a null became NaN, and TF Serving's route parsed
    text. The Cortex route keeps Cortex's reading of them (a null is NaN there)."""
    bodies = _bodies("f32", data)
    for path in routes:
        answer = requests.post(server.url + path, data=bodies[path], timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert "input 'f32'" in error and what in error, (path, error)


def test_a_number_beyond_a_double_is_refused_on_every_route(server: Server) -> None:
    # the TF Serving route (and V2, which reads NaN and Infinity too) read 1e309 as Infinity
    for path, body in _bodies("f32", "[1e309, 1]").items():
        answer = requests.post(server.url + path, data=body, timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        assert "malformed JSON: number is infinity" in answer.json()["error"], (path, answer.text)


@pytest.mark.parametrize(("name", "data"), [("f32", "[true, 1.5]"), ("i64", "[1, true]")])
def test_true_among_numbers_is_a_400_on_a_protocol_route_and_the_replica_keeps_serving(
    server: Server, name: str, data: str
) -> None:
    """numpy reads [true, 1.5] as the floats 1.0 and 1.5 (and [1, true] as the ints 1, 1), so a
    client's true reached the model as 1: V2's BOOL is its own datatype, TF Serving's DT_BOOL
    too. The Cortex route keeps Cortex's reading."""
    bodies = _bodies(name, data)
    for path in ROUTES[1:]:
        answer = requests.post(server.url + path, data=bodies[path], timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert f"input '{name}'" in error and "true/false" in error, (path, error)
    assert requests.post(server.url + ROUTES[0], data=bodies[ROUTES[0]], timeout=10).status_code == 200
    for path, body in _bodies(name, "[0, 1]").items():
        answer = requests.post(server.url + path, data=body, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        assert _outputs(path, answer)[name] == [0, 1], (path, answer.text)
