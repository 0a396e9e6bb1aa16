"""Model dtypes and output kinds end to end: a real `inferd serve`, real HTTP on every route.

Each value a client sends comes back as it was sent (float64 digits, int64 and uint64 past
2**53, float16's largest), an output that holds nothing (an ONNX optional output left empty)
is answered as nothing, and a value a dtype cannot hold is a 400 that states the dtype's range
truly.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton

from tests.conftest import Server, make_project, save_tensorflow


def _save(graph: Any, path: Path, opset: int = 17) -> Path:
    from onnx import helper, save_model

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    save_model(model, str(path))
    return path


def _maybe_output(path: Path) -> Path:
    """y = x (float [n]) and o: an ``optional(tensor(float))`` output the model leaves empty."""
    from onnx import TensorProto, helper

    maybe = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    graph = helper.make_graph(
        [
            helper.make_node(
                "Optional", [], ["o"], type=helper.make_tensor_type_proto(TensorProto.FLOAT, [])
            ),
            helper.make_node("Identity", ["x"], ["y"]),
        ],
        "maybe_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_value_info("o", maybe), helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    return _save(graph, path, opset=18)


def _identities(path: Path) -> Path:
    """One Identity per dtype, ``<kind>`` [n] -> ``<kind>_out``."""
    from onnx import TensorProto, helper

    kinds = {
        "f16": TensorProto.FLOAT16,
        "f64": TensorProto.DOUBLE,
        "i8": TensorProto.INT8,
        "i64": TensorProto.INT64,
        "u64": TensorProto.UINT64,
        "s": TensorProto.STRING,
    }
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [f"{name}_out"]) for name in kinds],
        "identities",
        [helper.make_tensor_value_info(name, kind, [None]) for name, kind in kinds.items()],
        [helper.make_tensor_value_info(f"{name}_out", kind, [None]) for name, kind in kinds.items()],
    )
    return _save(graph, path)


def _map_through(path: Path) -> Path:
    """The map input ``prices`` (``map(string,tensor(float))``, a DictVectorizer's) given back as
    the model's output: onnxruntime hands a map output over as a dict."""
    from onnx import TensorProto, helper

    prices = helper.make_map_type_proto(
        TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    )
    graph = helper.make_graph(
        [],
        "map_through",
        [helper.make_value_info("prices", prices)],
        [helper.make_value_info("prices", prices)],
    )
    return _save(graph, path)


def _sequence_through(path: Path, kind: int = 1) -> Path:
    """``parts``, an ONNX sequence of tensors (``seq(tensor(float))``, or of ``kind``): given back
    as ``same``, and ``count`` how many it holds."""
    from onnx import TensorProto, helper

    parts = helper.make_sequence_type_proto(helper.make_tensor_type_proto(kind, None))
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["parts"], ["same"]),
            helper.make_node("SequenceLength", ["parts"], ["count"]),
        ],
        "sequence_through",
        [helper.make_value_info("parts", parts)],
        [
            helper.make_value_info("same", parts),
            helper.make_tensor_value_info("count", TensorProto.INT64, []),
        ],
    )
    return _save(graph, path)


DATATYPES = {"f16": "FP16", "f64": "FP64", "i8": "INT8", "i64": "INT64", "u64": "UINT64", "s": "BYTES"}
# The edges of each dtype, as raw JSON: a JSON library reading them as floats would change them.
EDGES = {
    "f16": "[65504, -65504, 0.5]",
    "f64": "[0.1, 0.30000000000000004, 1e308, 5e-324]",
    "i8": "[-128, 127, 0]",
    "i64": "[-9223372036854775808, 9223372036854775807, 9007199254740993]",
    "u64": "[18446744073709551615, 0, 9007199254740993]",
    "s": '["\\u00e9t\\u00e9", "", "a"]',
}
EXPECTED = {
    "f16": [65504.0, -65504.0, 0.5],
    "f64": [0.1, 0.30000000000000004, 1e308, 5e-324],
    "i8": [-128, 127, 0],
    "i64": [-(2**63), 2**63 - 1, 2**53 + 1],
    "u64": [2**64 - 1, 0, 2**53 + 1],
    "s": ["été", "", "a"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("dtypes")
    models = {
        "maybe.onnx": _maybe_output(root / "maybe.onnx"),
        "kinds.onnx": _identities(root / "kinds.onnx"),
        "prices.onnx": _map_through(root / "prices.onnx"),
        "parts.onnx": _sequence_through(root / "parts.onnx"),
        "words.onnx": _sequence_through(root / "words.onnx", 8),  # TensorProto.STRING
    }
    apis = "".join(
        f"- kind: api\n  name: {name}\n  onnx:\n    model: {name}.onnx\n  compute:\n    cpu: 100m\n"
        for name in ("maybe", "kinds", "prices", "parts", "words")
    )
    project = make_project(root / "p", "- kind: deployment\n  name: d\n" + apis, models=models)
    running = Server(project, root / "serve.log").wait_ready()
    yield running
    running.stop()


def _kinds_bodies(edges: dict[str, str]) -> dict[str, bytes]:
    """The same values on the three routes, as raw JSON."""
    cortex = "{" + ", ".join(f'"{name}": {data}' for name, data in edges.items()) + "}"
    v2 = ", ".join(
        f'{{"name": "{name}", "datatype": "{DATATYPES[name]}", "shape": [{data.count(",") + 1}], '
        f'"data": {data}}}'
        for name, data in edges.items()
    )
    return {
        "/d/kinds": cortex.encode(),
        "/v2/models/kinds/infer": ('{"inputs": [' + v2 + "]}").encode(),
        "/v1/models/kinds:predict": ('{"inputs": ' + cortex + "}").encode(),
    }


def test_the_edges_of_each_dtype_come_back_as_sent_on_every_route(server: Server) -> None:
    for path, body in _kinds_bodies(EDGES).items():
        answer = requests.post(server.url + path, data=body, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        found = answer.json()
        if path.startswith("/v2/"):
            values = {item["name"].removesuffix("_out"): item["data"] for item in found["outputs"]}
            types = {item["name"].removesuffix("_out"): item["datatype"] for item in found["outputs"]}
            assert types == DATATYPES, path
        elif path.startswith("/v1/"):
            values = {name.removesuffix("_out"): data for name, data in found["outputs"].items()}
        else:
            values = dict(zip(DATATYPES, found, strict=True))
        assert values == EXPECTED, (path, answer.text)


def test_a_float16_out_of_range_names_its_largest_value(server: Server) -> None:
    # the range read "-6.55e+04 to 6.55e+04" (65500), which 65504 and 65510 are not out of
    edges = {**EDGES, "f16": "[65520]"}
    for path, body in _kinds_bodies(edges).items():
        answer = requests.post(server.url + path, data=body, timeout=10)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        label = "FP16" if path.startswith("/v2/") else "float16"
        said = f"65520 is out of {label}'s range (-65504.0 to 65504.0)"
        assert "input 'f16'" in error and said in error, (path, error)


def test_an_empty_optional_output_is_left_out_of_v2_and_null_on_tf_serving(server: Server) -> None:
    # onnxruntime gives an empty optional output as None: V2 and TF Serving answered a 500
    # ("internal error: TypeError: 'NoneType' object is not iterable"), TF Serving's rows a 400
    # calling it a scalar
    assert server.post("/d/maybe", [1.5, 2.5]).json() == [None, [1.5, 2.5]]
    tensor = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]}
    answer = server.post("/v2/models/maybe/infer", {"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2], "data": [1.5, 2.5]}]
    asked = server.post(
        "/v2/models/maybe/infer", {"inputs": [tensor], "outputs": [{"name": "o"}, {"name": "y"}]}
    )
    assert [output["name"] for output in asked.json()["outputs"]] == ["y"], asked.text
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        given = triton.InferInput("x", [2], "FP32")
        given.set_data_from_numpy(np.array([1.5, 2.5], dtype=np.float32), binary_data=True)
        result = client.infer("maybe", [given])  # every output, as binary data
        assert result.as_numpy("y").tolist() == [1.5, 2.5] and result.as_numpy("o") is None
    finally:
        client.close()
    columns = server.post("/v1/models/maybe:predict", {"inputs": [1.5, 2.5]})
    assert columns.json() == {"outputs": {"o": None, "y": [1.5, 2.5]}}, columns.text
    rows = server.post("/v1/models/maybe:predict", {"instances": [1.5, 2.5]})
    assert rows.json() == {"predictions": [{"o": None, "y": 1.5}, {"o": None, "y": 2.5}]}, rows.text


def test_an_onnx_map_output_is_answered_whole_on_every_route(server: Server) -> None:
    # V2 and TF Serving's columns answered the map's keys alone (["a", "b"]: its values lost),
    # TF Serving's rows a 400 calling it a scalar
    prices = {"a": 1.5, "b": 2.0}
    assert server.post("/d/prices", prices).json() == [prices]
    tensor = {"name": "prices", "shape": [1], "datatype": "BYTES", "data": ['{"a": 1.5, "b": 2}']}
    answer = server.post("/v2/models/prices/infer", {"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [1], output
    assert [orjson.loads(document) for document in output["data"]] == [prices]
    metadata = requests.get(f"{server.url}/v2/models/prices", timeout=10).json()
    assert metadata["outputs"] == [{"name": "prices", "datatype": "BYTES", "shape": [1]}]
    columns = server.post("/v1/models/prices:predict", {"inputs": {"prices": prices}})
    assert columns.json() == {"outputs": prices}, columns.text
    rows = server.post("/v1/models/prices:predict", {"instances": [prices]})
    assert rows.json() == {"predictions": [prices]}, rows.text


def test_an_onnx_sequence_input_takes_a_list_of_tensors_on_every_route(server: Server) -> None:
    # its dtype was taken for text: every request was a 400 ("expected string [-1] values: got a
    # number (1) where a string belongs"), and V2's BYTES reached onnxruntime as a tensor (a 400
    # from the model)
    parts = [[1.5, 2.0], [[3.0]]]
    assert server.post("/d/parts", parts).json() == [parts, 2]
    assert server.post("/d/parts", {"parts": parts}).json() == [parts, 2]
    documents = ["[1.5, 2.0]", "[[3.0]]"]
    tensor = {"name": "parts", "shape": [2], "datatype": "BYTES", "data": documents}
    answer = server.post("/v2/models/parts/infer", {"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    same, count = answer.json()["outputs"]
    assert same["datatype"] == "BYTES" and [orjson.loads(d) for d in same["data"]] == parts, same
    assert count["data"] == [2], count
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:  # the sequence as binary BYTES elements, as tritonclient sends them
        given = triton.InferInput("parts", [2], "BYTES")
        given.set_data_from_numpy(
            np.array([d.encode() for d in documents], dtype=np.object_), binary_data=True
        )
        assert client.infer("parts", [given]).as_numpy("count").tolist() == 2
    finally:
        client.close()
    columns = server.post("/v1/models/parts:predict", {"inputs": parts})
    assert columns.json() == {"outputs": {"same": parts, "count": 2}}, columns.text
    # each element is a tensor of the element's dtype: text or a number beyond float32 is a 400
    said = "input 'parts': expected float32 any shape values: 1e+40 is out of float32's range"
    assert said in server.post("/d/parts", [[1e40]]).json()["error"]
    assert "input 'parts': expected seq(tensor(float)) (a list of tensors)" in server.post("/d/parts", 5).text
    wrong = server.post("/v2/models/parts/infer", {"inputs": [{**tensor, "data": ['["a"]', "[1]"]}]})
    assert wrong.status_code == 400 and "text is not a number ('a')" in wrong.json()["error"], wrong.text
    rows = server.post("/v1/models/parts:predict", {"instances": parts})
    assert rows.status_code == 400 and "input 'parts' is a sequence, one per run" in rows.json()["error"]


def test_tf_serving_b64_text_in_a_sequence_of_strings_reaches_the_model_as_its_text(server: Server) -> None:
    # onnxruntime turned the bytes of a {"b64": ...} into their repr: the model got "b'hi'"
    body = {"inputs": [[{"b64": base64.b64encode(b"hi").decode()}, "x"], ["\u00e9"]]}
    answer = server.post("/v1/models/words:predict", body)
    assert answer.json() == {"outputs": {"same": [["hi", "x"], ["é"]], "count": 2}}, answer.text
    latin = {"inputs": [[{"b64": base64.b64encode("café".encode("latin-1")).decode()}]]}
    refused = server.post("/v1/models/words:predict", latin)
    assert refused.status_code == 400 and "input 'parts' holds bytes that are not UTF-8" in refused.text


def test_the_openapi_document_describes_map_and_sequence_inputs_as_they_are_taken(server: Server) -> None:
    # both were described by their dtype: a map input as a string, a sequence one as strings
    from openapi_spec_validator import validate

    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    validate(document)

    def body(path: str) -> Any:
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return schema["oneOf"][0]  # the one input's value (the other: an object by input name)

    assert body("/d/prices")["type"] == "object", body("/d/prices")
    assert body("/d/parts")["type"] == "array" and body("/d/parts")["items"] == {}, body("/d/parts")


@pytest.fixture(scope="module")
def tf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A SavedModel whose input is a bfloat16 (TensorFlow's; ml_dtypes', numpy's kind "V")."""
    import tensorflow as tf

    class Halves(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.bfloat16, name="x")])  # type: ignore[untyped-decorator]
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": x * tf.constant(2.0, tf.bfloat16)}

    root = tmp_path_factory.mktemp("bfloat16")
    module = Halves()
    save_tensorflow(module, root / "model", {"serving_default": module.serve})
    project = make_project(
        root / "p",
        "- kind: deployment\n  name: t\n- kind: api\n  name: halves\n  tensorflow:\n    model: model\n",
        models={"model": root / "model"},
    )
    running = Server(project, root / "serve.log").wait_ready()
    yield running
    running.stop()


@pytest.mark.tensorflow
def test_a_bfloat16_input_takes_numbers_it_holds_and_refuses_the_rest(tf_server: Server) -> None:
    # numpy's kind for bfloat16 is "V", so no route checked its range: 1e40 and 3.4e38 (above
    # its largest, 3.39e38) reached the model as Infinity (V2 refused 1e40 only), and TF
    # Serving took true as 1
    x = {"name": "x", "shape": [2], "datatype": "BF16", "data": [1.5, -2.0]}
    assert tf_server.post("/t/halves", {"x": [1.5, -2.0]}).json() == {"y": [3.0, -4.0]}
    assert tf_server.post("/v1/models/halves:predict", {"inputs": [1.5, -2.0]}).json() == {
        "outputs": [3.0, -4.0]
    }
    assert tf_server.post("/v2/models/halves/infer", {"inputs": [x]}).json()["outputs"][0]["data"] == [
        3.0,
        -4.0,
    ]
    said = "is out of {T}'s range (-3.3895313892515355e+38 to 3.3895313892515355e+38)"
    for number in ("1e40", "3.4e38"):
        bodies = {
            "/t/halves": f'{{"x": [{number}]}}',
            "/v1/models/halves:predict": f'{{"instances": [{number}]}}',
            "/v2/models/halves/infer": (
                f'{{"inputs": [{{"name": "x", "shape": [1], "datatype": "BF16", "data": [{number}]}}]}}'
            ),
        }
        for path, body in bodies.items():
            answer = tf_server.post(path, data=body.encode())
            assert answer.status_code == 400, (path, answer.text)
            error = answer.json()["error"]
            label = "BF16" if path.startswith("/v2/") else "bfloat16"
            assert "input 'x'" in error and said.format(T=label) in error, (path, error)
    answer = tf_server.post("/v1/models/halves:predict", {"inputs": [True, 1.5]})
    assert answer.status_code == 400 and "true/false is not a number" in answer.json()["error"], answer.text
