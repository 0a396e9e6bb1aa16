"""The ONNX runtime hands handlers real onnxruntime NodeArgs, as Cortex did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from inferd.runtimes import load_runtime


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
