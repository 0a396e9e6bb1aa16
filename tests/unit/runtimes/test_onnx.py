"""The ONNX runtime hands handlers real onnxruntime NodeArgs, as Cortex did."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from inferd.errors import InputError, LoadError
from inferd.handler.predictor import Predictor
from inferd.protocols.v2 import decode_request
from inferd.protocols.v2_types import tensor_metadata
from inferd.runtimes import base as runtimes_base
from inferd.runtimes import load_runtime
from inferd.runtimes.onnx import OnnxRuntime


def test_pre_gets_inputs_and_post_gets_outputs(iris_onnx_model: Path) -> None:
    runtime = load_runtime("onnx", iris_onnx_model)
    pre = runtime.handler_signature("pre")
    post = runtime.handler_signature("post")
    assert all(isinstance(arg, ort.NodeArg) for arg in [*pre, *post])
    assert [arg.name for arg in pre] == ["input"]
    assert pre[0].type == "tensor(float)"
    assert [arg.name for arg in post] == ["output_label", "output_probability"]


def test_specs_mark_dynamic_dimensions(iris_onnx_model: Path) -> None:
    runtime = load_runtime("onnx", iris_onnx_model)
    (spec,) = runtime.inputs
    assert spec.dtype == np.float32
    assert spec.shape == (None, 4)
    assert spec.describe() == {"name": "input", "dtype": "float32", "shape": [-1, 4], "type": "tensor(float)"}


def test_run_returns_the_session_run_list(iris_onnx_model: Path) -> None:
    runtime = load_runtime("onnx", iris_onnx_model)
    rows = np.array([[5.2, 3.6, 1.4, 0.3], [6.9, 3.1, 5.4, 2.1]], dtype=np.float32)
    prediction = runtime.run({"input": rows})
    assert isinstance(prediction, list) and len(prediction) == 2
    assert prediction[0].tolist() == [0, 2]
    assert set(prediction[1][0]) == {0, 1, 2}  # the ZipMap output: one map per row


def test_a_zipmap_output_is_described_as_one_map_per_row(iris_onnx_model: Path) -> None:
    """onnxruntime gives a sequence output the shape ``[]``: `inferd get -v`, the endpoint's GET
    and TF Serving's metadata showed skl2onnx's ZipMap as a scalar while V2 said ``[-1]``."""
    from inferd.protocols.tfserving import signature_def

    runtime = load_runtime("onnx", iris_onnx_model)
    zipmap = runtime.outputs[1]
    assert zipmap.describe() == {
        "name": "output_probability",
        "dtype": "object",
        "shape": [-1],
        "type": "seq(map(int64,tensor(float)))",
    }
    outputs = signature_def({"outputs": [zipmap.describe()]})["signature_def"]["serving_default"]["outputs"]
    assert outputs["output_probability"]["tensor_shape"] == {"dim": [{"size": "-1"}]}


def text_pipeline(path: Path, locale: str) -> Any:
    """A scikit-learn TF-IDF + logistic regression exported by skl2onnx (strings in), with its
    StringNormalizer on ``locale``; the fitted pipeline."""
    import onnx
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["good movie", "bad movie", "great film", "awful film", "Loved it", "Hated it"]
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, ["pos", "neg"] * 3)
    model = convert_sklearn(pipeline, initial_types=[("text", StringTensorType([None, 1]))])
    for node in model.graph.node:
        if node.op_type == "StringNormalizer":
            kept = [attribute for attribute in node.attribute if attribute.name != "locale"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("locale", locale)])
    onnx.save(model, str(path))
    return pipeline


def test_a_text_model_whose_locale_this_machine_lacks_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # skl2onnx leaves the locale out, and onnxruntime then wants en_US.UTF-8, which slim images
    # (python:3.11-slim, this project's export) do not have: the model failed to load there.
    pipeline = text_pipeline(tmp_path / "text.onnx", "xx_XX.UTF-8")  # a locale no machine has
    with caplog.at_level(logging.WARNING, logger="inferd.replica"):
        runtime = load_runtime("onnx", tmp_path / "text.onnx")
    assert "no locale xx_XX.UTF-8 for StringNormalizer" in caplog.text
    texts = ["GOOD film", "a bad movie"]
    labels = runtime.run({"text": np.array([[text] for text in texts], dtype=object)})[0]
    assert list(labels) == list(pipeline.predict(texts))


@pytest.mark.parametrize("name", ["model", os.fsdecode(b"caf\xe9")])
def test_a_text_model_with_external_data_whose_locale_this_machine_lacks_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Its weights stay in their file beside the model (was: the model, rewritten for the
    fallback locale, was loaded from memory, where onnxruntime found no folder for that file;
    in a folder whose name is not UTF-8, 'incompatible function arguments', the folder's name
    given to onnxruntime as it was)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(64, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node(
                "StringNormalizer", ["text"], ["lower"], case_change_action="LOWER", locale="xx_XX.UTF-8"
            ),
            helper.make_node("Identity", ["weights"], ["scale"]),
        ],
        "text_and_weights",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
        [
            helper.make_tensor_value_info("lower", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, [64]),
        ],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(
        model,
        str(folder / "text.onnx"),
        save_as_external_data=True,
        location="text.weights",
        size_threshold=0,
    )
    assert (folder / "text.weights").stat().st_size == weights.nbytes  # the weights are outside the model
    folder = folder.rename(tmp_path / name)
    with caplog.at_level(logging.WARNING, logger="inferd.replica"):
        runtime = load_runtime("onnx", folder / "text.onnx")
    assert "no locale xx_XX.UTF-8 for StringNormalizer" in caplog.text
    lower, scale = runtime.run({"text": np.array(["GOOD Film", "ÉTÉ"], dtype=object)})
    assert list(lower) == ["good film", "été"] and scale.tolist() == weights.tolist()
    assert sorted(path.name for path in folder.iterdir()) == ["text.onnx", "text.weights"]  # nothing written


def onnx_project(root: Path, model: Any) -> Predictor:
    """A one-API Cortex project serving ``model`` (an onnx ModelProto), built in-process."""
    import onnx

    from inferd.config.load import load_project

    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / "model.onnx"))
    text = "- kind: deployment\n  name: d\n- kind: api\n  name: m\n  onnx:\n    model: model.onnx\n"
    (root / "cortex.yaml").write_text(text)
    config = load_project(root).apis[0]
    return Predictor(config.api, root, root / "model.onnx")


def test_a_dictvectorizer_pipeline_takes_a_json_object(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """skl2onnx's DictVectorizer takes a map(string, tensor(float)): a JSON object is that map,
    under the input's name or as the whole body (was: 400 'expected string [] values')."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DictionaryType, FloatTensorType, StringTensorType
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows = [{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}, {"a": 2.0, "c": 1.0}, {"b": 3.0}]
    pipeline = make_pipeline(DictVectorizer(sparse=False), LogisticRegression()).fit(rows, [0, 1, 0, 1])
    model = convert_sklearn(
        pipeline, initial_types=[("features", DictionaryType(StringTensorType([1]), FloatTensorType([1])))]
    )
    predictor = onnx_project(tmp_path / "p", model)
    assert predictor.runtime is not None
    (spec,) = predictor.runtime.inputs
    assert spec.describe()["type"] == "map(string,tensor(float))"
    direct = ort.InferenceSession(model.SerializeToString()).run(None, {"features": {"a": 2.0, "b": 1}})
    with caplog.at_level(logging.WARNING, logger="inferd.handler"):
        for sample in ({"features": {"a": 2, "b": 1}}, {"a": 2, "b": 1.0}):
            label, probabilities = predictor.predict(sample)
            assert label.tolist() == direct[0].tolist() and probabilities == direct[1]
    assert "ignoring keys" not in caplog.text  # the map's keys are not input names
    # V2 (KServe) has no map datatype: the object is one BYTES element, a JSON document, as
    # ZipMap outputs are sent (was: 500 'Input must be a list of dictionaries').
    assert tensor_metadata(spec.describe()) == {"name": "features", "datatype": "BYTES", "shape": [1]}
    for data in (['{"a": 2, "b": 1}'], [{"a": 2, "b": 1}]):
        body = json.dumps({"inputs": [{"name": "features", "shape": [1], "datatype": "BYTES", "data": data}]})
        _, arrays = decode_request(body.encode(), None, predictor.runtime.inputs)
        assert predictor.run_tensors(arrays)["output_probability"] == direct[1]
    two = {"name": "features", "shape": [2], "datatype": "BYTES", "data": ["{}", "{}"]}
    with pytest.raises(InputError, match=r"input 'features': .*one JSON object"):
        decode_request(json.dumps({"inputs": [two]}).encode(), None, predictor.runtime.inputs)
    with pytest.raises(InputError, match=r"input 'features': expected map\(string,tensor\(float\)\)"):
        predictor.predict({"features": [1.0, 2.0]})
    with pytest.raises(InputError, match=r"input 'features'.*'a' got str, not a number"):
        predictor.predict({"a": "x"})


@pytest.mark.parametrize(
    ("value_info", "said"),
    [
        # a DictVectorizer exported with double values: onnxruntime builds every map of floats
        (("map", 8, 11), "map(string,tensor(double))"),
        # onnxruntime's Python API takes no bfloat16 array: it was served as a string input
        (("tensor", 16, None), "tensor(bfloat16)"),
    ],
)
def test_an_input_onnxruntime_cannot_feed_from_python_fails_the_load(
    tmp_path: Path, value_info: tuple[str, int, int | None], said: str
) -> None:
    """Each request failed instead: a 500 from the model ('Unexpected input data type. Actual:
    map(string,tensor(float))'), or a 400 asking a bfloat16 input for text."""
    from onnx import TensorProto, helper, save_model

    kind, first, second = value_info
    if kind == "map":
        assert second is not None
        value = helper.make_value_info(
            "x", helper.make_map_type_proto(first, helper.make_tensor_type_proto(second, []))
        )
    else:
        value = helper.make_tensor_value_info("x", first, [None])
    graph = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["k"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
            )
        ],
        "unfed",
        [value],
        [helper.make_tensor_value_info("k", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save_model(model, str(tmp_path / "unfed.onnx"))
    with pytest.raises(
        LoadError, match=rf"input 'x' of unfed.onnx is {re.escape(said)}, which onnxruntime's"
    ):
        OnnxRuntime(tmp_path / "unfed.onnx")


def two_input_model(op: str, **attributes: Any) -> Any:
    """An ONNX model of one ``op`` over inputs a and b whose dimensions are all unnamed."""
    from onnx import TensorProto, helper

    free = [None] * {"MatMul": 2, "Concat": 2, "Conv": 4}.get(op, 1)
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"], **attributes)],
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, free) for name in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(free))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    ("op", "attributes", "sample", "said"),
    [
        ("Add", {}, {"a": [1, 2, 3], "b": [1, 2]}, "its Add node says: Attempting to broadcast"),
        (
            "MatMul",
            {},
            {"a": [[1, 2, 3]] * 2, "b": [[1, 2, 3]] * 2},
            "its MatMul node says: MatMul dimension",
        ),
        ("Concat", {"axis": 0}, {"a": [[1, 2]], "b": [[1, 2, 3]]}, "its Concat node says: Non concat axis"),
        (  # an image of 2 channels for a kernel of 3 (a grayscale image for a colour model): a 500
            "Conv",
            {},
            {"a": [[[[1]], [[2]]]], "b": [[[[1]], [[2]], [[3]]]]},
            "its Conv node says: Input channels C is not equal to kernel channels * group",
        ),
    ],
)
def test_sizes_a_node_cannot_run_on_in_dimensions_the_model_leaves_free_are_the_clients_400(
    tmp_path: Path,
    op: str,
    attributes: dict[str, Any],
    sample: dict[str, Any],
    said: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two unnamed dimensions an Add needs equal: inferd cannot know they must agree, onnxruntime
    finds out inside the node. It was a 500 ('the model failed') quoting onnxruntime's source
    path and C++ condition; it is the client's 400, naming the shapes it sent and the node. The
    API's log says so once per node (a model that can run on no input shows there, not in 5xx)."""
    monkeypatch.setattr(runtimes_base, "_REFUSED_AT", set())
    predictor = onnx_project(tmp_path / "p", two_input_model(op, **attributes))
    with caplog.at_level(logging.WARNING, logger="inferd.replica"):
        for _ in range(2):
            with pytest.raises(InputError) as refused:
                predictor.predict(sample)
    logged = [
        r.getMessage() for r in caplog.records if "could not run on a client's inputs" in r.getMessage()
    ]
    assert len(logged) == 1 and f"({op}: " in logged[0], logged
    message = refused.value.message
    assert refused.value.status_code == 400
    shapes = ", ".join(f"'{name}' {list(np.shape(value))}" for name, value in sample.items())
    assert message.startswith(f"the model cannot run on these inputs ({shapes}): {said}")
    assert "onnxruntime_src" not in message and ".h:" not in message and "was false" not in message
    fitting = {name: value[: len(sample["b"])] if op == "Add" else value for name, value in sample.items()}
    if op == "MatMul":
        fitting["b"] = [[1], [2], [3]]
    if op == "Concat":
        fitting["b"] = [[3, 4]]
    if op == "Conv":
        fitting["b"] = [[[[1]], [[2]]]]
    assert predictor.predict(fitting)  # sizes that fit are answered as before


def test_a_complaint_onnxruntime_nests_in_another_quotes_neither_its_code_nor_its_status(
    tmp_path: Path,
) -> None:
    """A size the client gives a shape input (an Expand to ``[-3]``): onnxruntime's complaint
    comes nested in another, each with its place in the C++ source. The 400 quoted
    'OrtValue* onnxruntime::OpKernelContext::OutputMLValue(int, const onnxruntime::TensorShape&)
    [ONNXRuntimeError] : 1 : FAIL : tensor.cc:57 CalculateTensorStorageSize Tensor ...'."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "s"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    predictor = onnx_project(tmp_path / "p", model)
    with pytest.raises(InputError) as refused:
        predictor.predict({"x": [1.0], "s": [-3]})
    assert refused.value.message == (
        "the model cannot run on these inputs ('s' [1], 'x' [1]): "
        "its Expand node says: Tensor shape.Size() must be >= 0"
    )
    assert np.asarray(predictor.predict({"x": [1.0], "s": [3]})[0]).tolist() == [1.0, 1.0, 1.0]


def test_a_complaint_after_a_cpp_function_of_several_words_leaves_the_function_out() -> None:
    """onnxruntime's ORT_THROW writes its place as the file, the line and the C++ function as
    the compiler prints it (``void* onnxruntime::BFCArena::Allocate(size_t, bool)``): only its
    first word was left out."""
    from inferd.runtimes.onnx import node_refusal

    said = (
        "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Tile node. "
        "Name:'t' Status Message: /onnxruntime_src/onnxruntime/core/framework/tensor_shape.cc:40 "
        "onnxruntime::TensorShape onnxruntime::TensorShape::Slice(size_t, size_t) const "
        "Invalid tensor shape slice argument."
    )
    assert node_refusal(said, {"x": np.zeros((2, 3))}) == (
        "the model cannot run on these inputs ('x' [2, 3]): its Tile node says: "
        "Invalid tensor shape slice argument."
    )


def test_an_index_past_a_gathers_table_is_the_clients_400_on_the_cortex_route_too(tmp_path: Path) -> None:
    """onnxruntime calls an index past a Gather's table an invalid argument: V2 and TF Serving
    answered 400 with its whole text ('[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero
    status code returned while running Gather node. Name:'' Status Message: ...'), the Cortex
    route 500 'the model failed'. Every route answers the node's sentence, as for sizes."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "i"], ["y"])],
        "g",
        [helper.make_tensor_value_info("i", TensorProto.INT64, [2])],  # no free dimension
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[helper.make_tensor("table", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    predictor = onnx_project(tmp_path / "p", model)
    assert [values.tolist() for values in predictor.predict({"i": [2, 0]})] == [[3.0, 1.0]]
    with pytest.raises(InputError) as refused:
        predictor.predict({"i": [7, 0]})
    assert refused.value.message == (
        "the model cannot run on these inputs ('i' [2]): its Gather node says: indices element out of "
        "data bounds, idx=7 must be within the inclusive range [-3,2]"
    )
