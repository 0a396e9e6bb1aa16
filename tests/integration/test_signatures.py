"""Inputs fitted to a model's signature on every route of a real `inferd serve`: what a client
sends is what the model gets, or a 400 naming the input and both shapes; never a silent reshape.

Black-box cases that once went wrong: a fixed first dimension filled with a "batch of one" (the
model then failed, a 500); three numbers sent as three TF Serving instances read as one row of
three (one prediction for three instances); a V2 BYTES null reaching a string model as "None";
V2 data nested as [3, 2] under a declared shape [2, 3]; a TensorFlow scalar output (a 500 on V2
and TF Serving's columns).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import Server, make_project, save_tensorflow


def _identity(path: Path, kind: int, shape: list[Any] | None) -> Path:
    from onnx import helper, save_model

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", kind, shape)],
        [helper.make_tensor_value_info("y", kind, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save_model(model, str(path))
    return path


def _add(path: Path) -> Path:
    """sum = a + b, both float [n, 2]: ONNX names the first dimension of both ``n``."""
    from onnx import TensorProto, helper, save_model

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "add",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", 2]) for name in ("a", "b")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save_model(model, str(path))
    return path


def _features(path: Path) -> Path:
    """ONNX-ML's DictVectorizer, as skl2onnx exports scikit-learn's: map(string, float) in,
    float [1, 3] out, columns a, b, c."""
    from onnx import TensorProto, helper, save_model

    graph = helper.make_graph(
        [
            helper.make_node(
                "DictVectorizer", ["x"], ["y"], domain="ai.onnx.ml", string_vocabulary=["a", "b", "c"]
            )
        ],
        "features",
        [
            helper.make_value_info(
                "x", helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(1, []))
            )
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    save_model(model, str(path))
    return path


def _maybe(path: Path) -> Path:
    """y = x and has = whether ``o`` was given: ``o`` is ``optional(tensor(float))``, which a
    client may leave out (opset 18)."""
    from onnx import TensorProto, helper, save_model

    maybe = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, ["n", 2]))
    graph = helper.make_graph(
        [helper.make_node("OptionalHasElement", ["o"], ["has"]), helper.make_node("Identity", ["x"], ["y"])],
        "maybe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2]), helper.make_value_info("o", maybe)],
        [
            helper.make_tensor_value_info("has", TensorProto.BOOL, []),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    save_model(model, str(path))
    return path


def _constant(path: Path) -> Path:
    """A model with no inputs: y = [1, 2], a constant."""
    from onnx import TensorProto, helper, save_model

    value = helper.make_tensor("v", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=value)],
        "constant",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from onnx import TensorProto

    root = tmp_path_factory.mktemp("signatures")
    models = {
        "fixed.onnx": _identity(root / "fixed.onnx", TensorProto.FLOAT, [2, 3]),
        "rows.onnx": _identity(root / "rows.onnx", TensorProto.FLOAT, ["batch", 3]),
        "images.onnx": _identity(root / "images.onnx", TensorProto.FLOAT, ["batch", 4, 4, 1]),
        "text.onnx": _identity(root / "text.onnx", TensorProto.STRING, ["batch", 2]),
        "bytes.onnx": _identity(root / "bytes.onnx", TensorProto.UINT8, ["batch"]),
        "add.onnx": _add(root / "add.onnx"),
        "open.onnx": _identity(root / "open.onnx", TensorProto.FLOAT, None),  # any rank
        "scalar.onnx": _identity(root / "scalar.onnx", TensorProto.FLOAT, []),
        "features.onnx": _features(root / "features.onnx"),
        "maybe.onnx": _maybe(root / "maybe.onnx"),
        "constant.onnx": _constant(root / "constant.onnx"),
    }
    apis = "".join(
        f"- kind: api\n  name: {name}\n  onnx:\n    model: {name}.onnx\n  compute:\n    cpu: 100m\n"
        for name in (
            "fixed",
            "rows",
            "images",
            "text",
            "bytes",
            "add",
            "open",
            "scalar",
            "features",
            "maybe",
            "constant",
        )
    )
    apis += (
        "- kind: api\n  name: handled\n  onnx:\n    model: bytes.onnx\n    request_handler: floats.py\n"
        "  compute:\n    cpu: 100m\n"
    )
    # a handler that builds its array as float64 (np.array of a list of floats): common in Cortex
    # projects, and for a uint8 input a value astype would wrap (300 to 44) or cut (1.5 to 1)
    handler = (
        "import numpy as np\n\n\ndef pre_inference(sample, signature, metadata):\n"
        "    return np.array(sample['values'], dtype=np.float64)\n"
    )
    project = make_project(
        root / "p", "- kind: deployment\n  name: d\n" + apis, {"floats.py": handler}, models
    )
    running = Server(project, root / "serve.log").wait_ready()
    yield running
    running.stop()


def _error(answer: requests.Response) -> str:
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert isinstance(message, str)
    return message


def _v2(server: Server, model: str, tensor: dict[str, Any]) -> requests.Response:
    return server.post(f"/v2/models/{model}/infer", {"inputs": [{"name": "x", **tensor}]})


def test_a_fixed_first_dimension_is_never_filled_with_a_batch_of_one(server: Server) -> None:
    # [2, 3] takes two rows of three; one row of three is not a batch of one (it was: the model
    # then failed, a 500 naming onnxruntime's dimensions)
    for route, body in [("/d/fixed", [1, 2, 3]), ("/v1/models/fixed:predict", {"inputs": [1, 2, 3]})]:
        message = _error(server.post(route, body))
        assert "input 'x'" in message and "[2, 3]" in message and "[3]" in message, message
    good = server.post("/d/fixed", [[1, 2, 3], [4, 5, 6]])
    assert good.json() == [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]


def test_each_tf_serving_instance_is_one_row_of_the_batch(server: Server) -> None:
    # three numbers as three instances are three rows of [], not one row of [3]
    message = _error(server.post("/v1/models/rows:predict", {"instances": [1, 2, 3]}))
    assert "input 'x'" in message and "3 instances" in message and "[-1, 3]" in message, message
    examples = {"examples": [{"x": 1}, {"x": 2}, {"x": 3}]}  # :classify and :regress alike
    assert "3 examples of shape []" in _error(server.post("/v1/models/rows:regress", examples))
    one = server.post("/v1/models/rows:predict", {"instances": [[1, 2, 3]]})
    assert one.json() == {"predictions": [[1.0, 2.0, 3.0]]}
    # four rows of a 4x4 image are four instances, not one image missing its channel
    image = [[float(i * 4 + j) for j in range(4)] for i in range(4)]
    message = _error(server.post("/v1/models/images:predict", {"instances": image}))
    assert "4 instances of shape [4]" in message, message
    # one image without its channel axis is one instance (the size-1 axis added, values kept)
    answer = server.post("/v1/models/images:predict", {"instances": [image]})
    assert np.array(answer.json()["predictions"]).reshape(4, 4).tolist() == image
    # the columnar format is one tensor: a bare sample still stands for a batch of one
    assert server.post("/v1/models/rows:predict", {"inputs": [1, 2, 3]}).json() == {
        "outputs": [[1.0, 2.0, 3.0]]
    }


def test_a_tf_serving_b64_string_anywhere_reaches_the_model_as_its_text(server: Server) -> None:
    hi = base64.b64encode(b"hi").decode()
    body = {"instances": [["x", {"b64": hi}], [{"b64": hi}, "y"]]}
    answer = server.post("/v1/models/text:predict", body)
    assert answer.json() == {"predictions": [["x", "hi"], ["hi", "y"]]}, answer.text
    # bytes that are not text: onnxruntime takes text, and U+FFFD in their place was other text
    latin = {"instances": [["x", {"b64": base64.b64encode("café".encode("latin-1")).decode()}]]}
    message = _error(server.post("/v1/models/text:predict", latin))
    assert (
        message == "input 'x' holds bytes that are not UTF-8 text, and onnxruntime's string inputs take text"
    )


def test_v2_bytes_data_takes_strings_only(server: Server) -> None:
    good = _v2(server, "text", {"shape": [1, 2], "datatype": "BYTES", "data": ["a", "é"]})
    assert good.json()["outputs"][0]["data"] == ["a", "é"], good.text
    # before, each reached the model as Python's text for it: "None", "1", "{'b64': ...}", "b'x'"
    for data in ([None, "x"], [1, 2], [{"b64": "aGk="}, "x"]):
        message = _error(_v2(server, "text", {"shape": [1, 2], "datatype": "BYTES", "data": data}))
        assert "input 'x'" in message and "BYTES elements are strings" in message, message


def test_v2_numbers_are_numbers_not_text(server: Server) -> None:
    # numpy parses "2" and "nan" as numbers: a V2 client's datatype says what the data holds
    for data, shown in (([1, "2", 3], '"2"'), (["nan", "1", "2"], '"nan"')):
        message = _error(_v2(server, "rows", {"shape": [1, 3], "datatype": "FP32", "data": data}))
        assert message == f"input 'x': FP32 data holds text ({shown}), not numbers"
    # ... nor JSON's true and false, which numpy takes as 1 and 0
    message = _error(_v2(server, "rows", {"shape": [1, 3], "datatype": "FP32", "data": [True, False, True]}))
    assert message == "input 'x': FP32 data holds true/false, not numbers"


def test_v2_data_nested_against_its_shape_is_refused(server: Server) -> None:
    nested = [[1, 2], [3, 4], [5, 6]]
    message = _error(_v2(server, "fixed", {"shape": [2, 3], "datatype": "FP32", "data": nested}))
    assert message == "input 'x': data is nested as [3, 2], but the shape says [2, 3]"
    flat = _v2(server, "fixed", {"shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]})
    rows = _v2(server, "fixed", {"shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]})
    assert flat.json()["outputs"] == rows.json()["outputs"]
    assert rows.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # a size-1 axis nested or not moves no value (as Triton takes it): one row of three, unwrapped
    one = _v2(server, "rows", {"shape": [1, 3], "datatype": "FP32", "data": [[[1, 2, 3]]]})
    assert one.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0], one.text


def test_an_array_from_pre_inference_is_cast_as_exactly_as_json(server: Server) -> None:
    for values, said in (([300.0], "300.0 is out of uint8's range (0 to 255)"), ([1.5], "1.5 is not")):
        message = _error(server.post("/d/handled", {"values": values}))
        assert "input 'x'" in message and said in message and "pre_inference" in message, message
    assert server.post("/d/handled", {"values": [7.0, 255.0]}).json() == [[7, 255]]


def test_inputs_that_name_a_dimension_alike_must_agree_on_its_size(server: Server) -> None:
    # onnxruntime broadcast one row of a over two of b: an answer for a request that does not fit
    said = "input 'b': dimension 'n' is 2, but input 'a' has it 1"
    one, two = [[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]]
    assert said in _error(server.post("/d/add", {"a": one, "b": two}))
    assert said in _error(server.post("/v1/models/add:predict", {"inputs": {"a": one, "b": two}}))
    tensors = [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": one},
        {"name": "b", "shape": [2, 2], "datatype": "FP32", "data": two},
    ]
    assert said in _error(server.post("/v2/models/add/infer", {"inputs": tensors}))
    assert server.post("/d/add", {"a": two, "b": two}).json() == [[[6.0, 8.0], [10.0, 12.0]]]


def test_an_input_of_open_rank_takes_any_shape_and_a_scalar_input_a_scalar(server: Server) -> None:
    # onnxruntime shows both as shape []: the open one refused every array but a scalar
    grid = [[1.0, 2.0], [3.0, 4.0]]
    assert server.post("/d/open", grid).json() == [grid]
    tensor = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": grid}
    answer = server.post("/v2/models/open/infer", {"inputs": [tensor]})
    assert answer.json()["outputs"][0]["shape"] == [2, 2], answer.text
    metadata = requests.get(f"{server.url}/v2/models/open", timeout=10).json()
    assert metadata["inputs"][0]["shape"] == [-1]
    assert server.post("/d/scalar", 2.5).json() == [2.5]
    message = _error(server.post("/d/scalar", [2.5, 1.0]))
    assert "input 'x'" in message and "expected shape []" in message, message
    # a scalar input has no batch dimension, so no rows: it said 'expected shape [], got shape [1]'
    # of the scalar the client sent
    message = _error(server.post("/v1/models/scalar:predict", {"instances": [2.5]}))
    assert message == (
        "input 'x' is a scalar (it has no batch dimension), so it cannot be sent as rows "
        "('instances'): send the columnar format ('inputs')"
    )
    assert server.post("/v1/models/scalar:predict", {"inputs": 2.5}).json() == {"outputs": 2.5}


def test_an_onnx_map_input_takes_a_json_object_on_every_route(server: Server) -> None:
    # scikit-learn's DictVectorizer exported by skl2onnx: every route refused the object (400
    # 'expected string [] values'; V2 a 500 from onnxruntime)
    assert server.post("/d/features", {"b": 2, "c": 0.5}).json() == [[[0.0, 2.0, 0.5]]]
    assert server.post("/d/features", {"x": {"a": 1}}).json() == [[[1.0, 0.0, 0.0]]]
    columns = server.post("/v1/models/features:predict", {"inputs": {"x": {"c": 3}}})
    assert columns.json() == {"outputs": [[0.0, 0.0, 3.0]]}, columns.text
    for row in ({"b": 1}, {"x": {"b": 1}}):  # one map per run: one instance
        answer = server.post("/v1/models/features:predict", {"instances": [row]})
        assert answer.json() == {"predictions": [[0.0, 1.0, 0.0]]}, answer.text
    two = server.post("/v1/models/features:predict", {"instances": [{"b": 1}, {"a": 1}]})
    assert "one instance" in _error(two)
    tensor = {"shape": [1], "datatype": "BYTES", "data": ['{"a": 4, "b": 5}']}
    assert _v2(server, "features", tensor).json()["outputs"][0]["data"] == [4.0, 5.0, 0.0]
    metadata = requests.get(f"{server.url}/v2/models/features", timeout=10).json()
    assert metadata["inputs"] == [{"name": "x", "datatype": "BYTES", "shape": [1]}]
    assert "'a' got str, not a number" in _error(server.post("/d/features", {"a": "one"}))
    assert "one JSON object" in _error(
        _v2(server, "features", {**tensor, "shape": [2], "data": ["{}", "{}"]})
    )


def test_an_empty_object_for_an_onnx_map_input_is_the_clients_400_on_every_route(server: Server) -> None:
    # onnxruntime makes no empty map: {} was a 500 "the model failed: RuntimeError: Size of
    # dictionary is empty" on each route (found by fuzzing the data plane)
    for answer in (
        server.post("/d/features", {}),
        server.post("/d/features", {"x": {}}),
        server.post("/v1/models/features:predict", {"instances": [{}]}),
        server.post("/v1/models/features:predict", {"inputs": {"x": {}}}),
        _v2(server, "features", {"shape": [1], "datatype": "BYTES", "data": ["{}"]}),
    ):
        assert "input 'x': expected map(string,tensor(float)) with one key or more, got {}" in _error(answer)
    assert server.post("/d/features", {"a": 1}).json() == [[[1.0, 0.0, 0.0]]]


def test_a_map_key_holding_a_lone_surrogate_is_the_clients_400_on_every_route(server: Server) -> None:
    # JSON's "\ud800" as a key of an ONNX map input: onnxruntime's UTF-8 encoding refused it, a
    # 500 "the model failed: UnicodeEncodeError" (found by fuzzing the data plane)
    for answer in (
        server.post("/d/features", {"\ud800": 1}),
        server.post("/v1/models/features:predict", {"inputs": {"x": {"a": 1, "\udfff": 2}}}),
    ):
        assert "input 'x'" in _error(answer) and "lone surrogate" in _error(answer)
    # V2's BYTES element holding the object as JSON text, in data or binary: orjson read it and
    # refused the escape, "a map(...) input takes a JSON object" for a JSON object
    element = json.dumps({"\ud800": 1}).encode()
    size = {"binary_data_size": 4 + len(element)}
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "parameters": size}]}
    ).encode()
    for v2 in (
        _v2(server, "features", {"shape": [1], "datatype": "BYTES", "data": [element.decode()]}),
        server.post(
            "/v2/models/features/infer",
            data=header + struct.pack("<I", len(element)) + element,
            headers={"Inference-Header-Content-Length": str(len(header))},
        ),
    ):
        assert "input 'x'" in _error(v2) and "lone surrogate" in _error(v2)


def test_an_optional_onnx_input_may_be_left_out_and_takes_its_element_type(server: Server) -> None:
    # optional(tensor(float)) was a required BYTES input: leaving it out was a 400 'missing
    # input', and its floats a 400 'datatype FP32 does not match the model's BYTES'
    row = [[1.0, 2.0]]
    assert server.post("/d/maybe", {"x": row}).json() == [False, row]
    assert server.post("/d/maybe", {"x": row, "o": row}).json() == [True, row]
    x = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
    for tensors, has in (([x], False), ([x, {**x, "name": "o"}], True)):
        answer = server.post("/v2/models/maybe/infer", {"inputs": tensors})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0] == {"name": "has", "datatype": "BOOL", "shape": [], "data": [has]}
    metadata = requests.get(f"{server.url}/v2/models/maybe", timeout=10).json()
    assert metadata["inputs"][1] == {"name": "o", "datatype": "FP32", "shape": [-1, 2]}
    config = requests.get(f"{server.url}/v2/models/maybe/config", timeout=10).json()
    assert config["input"][1] == {"name": "o", "data_type": "TYPE_FP32", "dims": [-1, 2], "optional": True}
    columns = server.post("/v1/models/maybe:predict", {"inputs": {"x": row}})
    assert columns.json() == {"outputs": {"has": False, "y": row}}, columns.text
    rows = server.post("/v1/models/maybe:predict", {"instances": [{"x": [1, 2], "o": [3, 4]}]})
    assert "output 'has' is a scalar" in _error(rows)  # the inputs fitted; its output has no rows
    message = _error(server.post("/d/maybe", {"x": row, "o": [["a", "b"]]}))
    assert "input 'o'" in message and "float32" in message, message


def test_a_model_with_no_inputs_says_so(server: Server) -> None:
    # it said "the model has several inputs: expected an object with the keys " (none named)
    assert server.post("/d/constant", {}).json() == [[1.0, 2.0]]
    assert server.post("/v2/models/constant/infer", {"inputs": []}).json()["outputs"][0]["data"] == [1.0, 2.0]
    assert server.post("/v1/models/constant:predict", {"inputs": {}}).json() == {"outputs": [1.0, 2.0]}
    said = "the model has no inputs: send an empty object ({})"
    assert _error(server.post("/d/constant", [1])) == said
    tensor = {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}
    assert _error(server.post("/v2/models/constant/infer", {"inputs": [tensor]})) == (
        "unexpected input 'a': the model has no inputs"
    )
    assert _error(server.post("/v1/models/constant:predict", {"inputs": {"a": 1}})) == (
        "unexpected input 'a': the model has no inputs"
    )
    assert "the model has no inputs" in _error(server.post("/v1/models/constant:predict", {"inputs": [1]}))


def test_classify_and_regress_answer_one_result_per_example(server: Server) -> None:
    # the constant's [2] output is not one value per example: one example was answered with two
    # results, [1.0, 2.0]
    message = _error(server.post("/v1/models/constant:regress", {"examples": [{}]}))
    assert message == (
        "this model has no output to regress with (a float [batch] or [batch, 1] output, "
        "one value per example: 1 here)"
    )
    assert "one row per example: 1 here" in _error(
        server.post("/v1/models/constant:classify", {"examples": [{}]})
    )
    answer = server.post("/v1/models/open:regress", {"examples": [{"x": 1.5}, {"x": 2.5}]})
    assert answer.json() == {"results": [1.5, 2.5]}, answer.text


@pytest.fixture(scope="module")
def tf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import tensorflow as tf

    class Totals(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])  # type: ignore[untyped-decorator]
        def serve(self, x: Any) -> dict[str, Any]:
            return {"doubled": x * 2.0, "total": tf.reduce_sum(x), "note": tf.constant("summed")}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])  # type: ignore[untyped-decorator]
        def echo(self, s: Any) -> dict[str, Any]:
            return {"same": tf.identity(s)}

    root = tmp_path_factory.mktemp("scalars")
    module = Totals()
    signatures = {"serving_default": module.serve, "echo": module.echo}
    save_tensorflow(module, root / "model", signatures)
    project = make_project(
        root / "p",
        "- kind: deployment\n  name: t\n- kind: api\n  name: totals\n  tensorflow:\n    model: model\n"
        "- kind: api\n  name: echo\n  tensorflow:\n    model: model\n    signature_key: echo\n",
        models={"model": root / "model"},
    )
    running = Server(project, root / "serve.log").wait_ready()
    yield running
    running.stop()


@pytest.mark.tensorflow
def test_a_tensorflow_scalar_output_is_a_0d_tensor_on_v2_and_tf_serving(tf_server: Server) -> None:
    # TensorFlow hands a 0-d output over as a NumPy scalar (bytes for a string): it was a 500
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    columns = tf_server.post("/v1/models/totals:predict", {"inputs": rows})
    assert columns.json() == {
        "outputs": {"doubled": [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]], "total": 21.0, "note": "summed"}
    }, columns.text
    tensor = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": rows}
    outputs = tf_server.post("/v2/models/totals/infer", {"inputs": [tensor]}).json()["outputs"]
    by_name = {output["name"]: output for output in outputs}
    assert by_name["total"] == {"name": "total", "datatype": "FP32", "shape": [], "data": [21.0]}
    assert by_name["note"] == {"name": "note", "datatype": "BYTES", "shape": [], "data": ["summed"]}
    client = triton.InferenceServerClient(tf_server.url.removeprefix("http://"))
    try:
        given = triton.InferInput("x", [2, 3], "FP32")
        given.set_data_from_numpy(np.array(rows, dtype=np.float32), binary_data=True)
        result = client.infer("totals", [given])
        assert result.as_numpy("total").shape == () and result.as_numpy("total").tolist() == 21.0
        assert result.as_numpy("note").tolist() == b"summed"
    finally:
        client.close()
    # the Cortex route keeps Cortex's shape: a scalar output is a list of one
    assert tf_server.post("/t/totals", {"x": rows}).json()["total"] == [21.0]


@pytest.mark.tensorflow
def test_v2_json_never_changes_bytes_that_are_not_text(tf_server: Server) -> None:
    # U+FFFD in place of each byte that is not UTF-8 was a silently different answer
    client = triton.InferenceServerClient(tf_server.url.removeprefix("http://"))
    try:
        given = triton.InferInput("s", [2], "BYTES")
        given.set_data_from_numpy(np.array([b"ok", b"\xff\xfe"], dtype=np.object_), binary_data=True)
        binary = client.infer("echo", [given], outputs=[triton.InferRequestedOutput("same")])
        assert binary.as_numpy("same").tolist() == [b"ok", b"\xff\xfe"]
        as_json = [triton.InferRequestedOutput("same", binary_data=False)]
        with pytest.raises(InferenceServerException, match="output 'same' holds bytes that are not UTF-8"):
            client.infer("echo", [given], outputs=as_json)
        text = triton.InferInput("s", [1], "BYTES")
        text.set_data_from_numpy(np.array(["héllo".encode()], dtype=np.object_), binary_data=False)
        assert client.infer("echo", [text], outputs=as_json).as_numpy("same").tolist() == ["héllo"]
    finally:
        client.close()


@pytest.mark.tensorflow
def test_v2_runs_the_signature_its_parameters_name(tf_server: Server) -> None:
    # V2 ran the API's own signature whatever parameters.signature_name said (TF Serving's honours it)
    tensor = {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["hi", "you"]}
    answer = tf_server.post(
        "/v2/models/totals/infer", {"parameters": {"signature_name": "echo"}, "inputs": [tensor]}
    )
    assert answer.json()["outputs"] == [
        {"name": "same", "datatype": "BYTES", "shape": [2], "data": ["hi", "you"]}
    ], answer.text
    unknown = tf_server.post(
        "/v2/models/totals/infer", {"parameters": {"signature_name": "nope"}, "inputs": [tensor]}
    )
    error = unknown.json()["error"]
    assert unknown.status_code == 400 and "signature 'nope' is not in the model (it has: " in error, error
    assert "serving_default" in error and "echo" in error, error
    number = tf_server.post(
        "/v2/models/totals/infer", {"parameters": {"signature_name": 5}, "inputs": [tensor]}
    )
    assert number.status_code == 400 and "must be a string" in number.json()["error"], number.text
    rows = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    named = {"parameters": {"signature_name": "serving_default"}, "inputs": [rows]}
    assert tf_server.post("/v2/models/totals/infer", named).status_code == 200
