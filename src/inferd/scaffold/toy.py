"""The small model a new project serves until the user brings theirs: built here, never downloaded.

A linear classifier of iris flowers with hand-set weights (no training data): the scores are
``features @ WEIGHTS + BIAS`` and the label is the best score. Only petal length counts: under
2.5 cm a setosa, over 5 cm a virginica, a versicolor between. Enough to see a project work.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from inferd.errors import UsageError
from inferd.runtimes.startup_notes import held_startup_notes

# features: sepal_length, sepal_width, petal_length, petal_width -> scores of the three labels
WEIGHTS = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 2.0], [0.0, 0.0, 0.0]]
BIAS = [5.0, 0.0, -10.0]
SAMPLE = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
SAMPLE_LABEL = "setosa"


def build_onnx(path: Path) -> None:
    """Write the model as ONNX: input ``features`` float[N, 4]; outputs ``scores``, ``label``."""
    try:
        from onnx import TensorProto, helper, numpy_helper, save_model
    except ImportError:
        raise UsageError(
            "building the starter ONNX model needs the onnx package, and serving it onnxruntime "
            "(pip install 'inferd[onnx]'); or pass --model PATH to use your own model"
        ) from None
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "weights"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
        ],
        "starter",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        ],
        initializer=[
            numpy_helper.from_array(np.array(WEIGHTS, dtype=np.float32), "weights"),
            numpy_helper.from_array(np.array(BIAS, dtype=np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path))


def build_tensorflow(path: Path) -> None:
    """Write the model as a SavedModel: ``serving_default`` takes ``features`` float[N, 4]."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with held_startup_notes():
        try:
            import tensorflow as tf
        except ImportError:
            raise UsageError(
                "building the starter TensorFlow model needs TensorFlow (pip install 'inferd[tensorflow]'); "
                "or pass --model PATH to use your own SavedModel"
            ) from None
        save_starter(tf, path)


def save_starter(tf: Any, path: Path) -> None:
    """Write the starter classifier with the ``tf`` module given (imported by the caller)."""

    class Starter(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.constant(WEIGHTS, dtype=tf.float32)
            self.bias = tf.constant(BIAS, dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])  # type: ignore[untyped-decorator]
        def serve(self, features: Any) -> dict[str, Any]:
            scores = tf.matmul(features, self.weights) + self.bias
            return {"scores": scores, "label": tf.argmax(scores, axis=1)}

    starter = Starter()
    path.parent.mkdir(parents=True, exist_ok=True)
    # AutoGraph imports the code it generates from temporary files it removes, but not their
    # bytecode: each init left two __autograph_generated_file*.pyc in $TMPDIR/__pycache__.
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        tf.saved_model.save(starter, str(path), signatures={"serving_default": starter.serve})
    finally:
        sys.dont_write_bytecode = writes_bytecode


def write_weights(path: Path) -> None:
    """Write the model as JSON weights, for the Python predictor to load in ``init``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"weights": WEIGHTS, "bias": BIAS}, indent=2) + "\n")
