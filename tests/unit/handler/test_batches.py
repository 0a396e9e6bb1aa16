"""How a batched prediction is checked against a sample run alone."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.handler.batches import PROBES, same_prediction
from inferd.handler.predictor import Predictor
from tests.conftest import make_project
from tests.unit.handler.test_predictor import build


def batching_predictor(tmp_path: Path, model: Any, api: str) -> Predictor:
    """A Predictor of an API ``api`` batching up to 4 samples of the ONNX ``model``."""
    from onnx import save_model

    model.ir_version = 8
    save_model(model, str(tmp_path / "model.onnx"))
    root = make_project(
        tmp_path / "p",
        f"- kind: deployment\n  name: b\n- kind: api\n  name: {api}\n  onnx:\n    model: model.onnx\n"
        "  batching:\n    max_batch_size: 4\n",
        {},
        {"model.onnx": tmp_path / "model.onnx"},
    )
    return build(root)


def test_a_sample_run_alone_agrees_with_its_rows_of_the_batch_to_float_noise() -> None:
    rows = [np.array([[0.1, 0.2]], dtype=np.float32), np.array([1])]
    assert same_prediction(rows, [rows[0] * (1 + 1e-6), np.array([1])])
    assert same_prediction([{"a": 0.5, "b": 0.5}], [{"a": 0.5, "b": 0.5000001}])  # a ZipMap's rows
    # a value near 0 beside larger ones: off by far more than itself, not than the output's scale
    assert same_prediction(np.array([[20.0, 1e-7]], np.float32), np.array([[20.0, 2e-5]], np.float32))
    assert same_prediction(np.array([[1.0, 0.5]], np.float16), np.array([[1.001, 0.5]], np.float16))
    assert same_prediction(np.array([[np.nan, np.inf]]), np.array([[np.nan, np.inf]]))
    assert same_prediction({"y": np.array([b"x"], dtype=object)}, {"y": np.array([b"x"], dtype=object)})


def test_another_samples_rows_or_values_that_do_not_compare_are_not_the_same() -> None:
    assert not same_prediction([np.array([[0, 0]])], [np.array([[1, 0]])])  # NonZero's indices
    assert not same_prediction([np.array([[0.9, 0.1]])], [np.array([[0.85, 0.15]])])  # another's
    assert not same_prediction(np.array([[1.0, np.nan]]), np.array([[1.0, 1.0]]))
    assert not same_prediction([np.array([[0, 0]])], [np.array([[0, 0], [0, 1]])])
    assert not same_prediction({"y": np.array([1.0])}, {"z": np.array([1.0])})
    assert not same_prediction(np.array([1, 2]), [[1], [2, 3]])  # ragged: no error, not the same


def test_a_model_that_mixes_the_samples_of_a_batch_is_caught_after_a_warm_up_of_one_payload(
    tmp_path: Path,
) -> None:
    # y = x - mean(x over the batch): rows kept, values mixed. Identical samples agree with
    # their answer alone, so a warm-up of one payload must not use up the checks.
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["x", "m"], ["y"]),
        ],
        "center",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    predictor = batching_predictor(
        tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), "c"
    )
    for _ in range(PROBES + 1):
        assert [error for _, error, _ in predictor.predict_batch([[[1, 2, 3]]] * 3)] == [None] * 3
    answers = [result for result, _, _ in predictor.predict_batch([[[1, 2, 3]], [[3, 4, 5]]])]
    assert [answer[0].tolist() for answer in answers] == [[[0, 0, 0]], [[0, 0, 0]]]  # as alone


def test_samples_that_leave_out_an_optional_input_run_as_a_batch(tmp_path: Path) -> None:
    # An ONNX optional input left out of every sample of a batch: the batch was built with every
    # input of the model, and the missing one failed the whole batch (a KeyError: 500 to each).
    from onnx import TensorProto, helper

    maybe = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, ["n", 2]))
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "maybe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2]), helper.make_value_info("o", maybe)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    predictor = batching_predictor(
        tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), "m"
    )
    results = predictor.predict_batch([{"x": [[1, 2]]}, {"x": [[3, 4]]}])
    assert [error for _, error, _ in results] == [None, None]
    assert [result[0].tolist() for result, _, _ in results] == [[[1, 2]], [[3, 4]]]


def test_an_empty_optional_output_does_not_stop_batching(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # onnxruntime gives an optional output that holds nothing as None: the batch was taken for
    # one whose outputs do not keep a row per sample ("batched requests run one sample at a time
    # from now on", a warning that was not true of the model)
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
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_value_info("o", maybe), helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    predictor = batching_predictor(
        tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), "m"
    )
    with caplog.at_level(logging.WARNING, logger="inferd.handler"):
        for _ in range(PROBES + 1):
            results = predictor.predict_batch([[[1, 2]], [[3, 4]], [[5, 6]]])
            assert [error for _, error, _ in results] == [None] * 3
            assert [(o, y.tolist()) for (o, y), _, _ in results] == [
                (None, [[1, 2]]),
                (None, [[3, 4]]),
                (None, [[5, 6]]),
            ]
    assert "one sample at a time" not in caplog.text


def test_bfloat16_rows_agree_to_their_noise_and_not_to_another_samples() -> None:
    # TensorFlow's bfloat16 (numpy's kind "V") was compared exactly: a batched kernel's rounding,
    # one step of bfloat16 (0.4%), turned batching off for the model ("a sample's rows of a batch
    # were not what it got alone")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    alone = np.array([[1.0, 0.5]], dtype=ml_dtypes.bfloat16)
    batched = np.array([[1.0078125, 0.5]], dtype=ml_dtypes.bfloat16)  # one step above 1.0
    assert same_prediction({"y": alone}, {"y": batched})
    assert not same_prediction({"y": alone}, {"y": np.array([[0.5, 1.0]], dtype=ml_dtypes.bfloat16)})
