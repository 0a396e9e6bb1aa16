"""The small model a new project serves until the user brings theirs: built here, never downloaded.

A linear classifier of iris flowers with hand-set weights (no training data): the scores are
``features @ WEIGHTS + BIAS`` and the label is the best score. Only petal length counts: under
2.5 cm a setosa, over 5 cm a virginica, a versicolor between. Enough to see a project work.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from inferd.errors import UsageError

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
            "building the starter ONNX model needs the onnx package (pip install onnx); "
            "or pass --model PATH to use your own model"
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
    # TensorFlow's C++ start-up notes (CPU features, absl) would read as errors of `inferd init`.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _kept_off_the_terminal():
            import tensorflow as tf
    except ImportError:
        raise UsageError(
            "building the starter TensorFlow model needs TensorFlow (pip install 'inferd[tensorflow]'); "
            "or pass --model PATH to use your own SavedModel"
        ) from None

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


@contextlib.contextmanager
def _kept_off_the_terminal() -> Iterator[None]:
    """What the process writes to its stderr meanwhile is shown only if the block fails: TensorFlow
    2.21's import writes its oneDNN note on a CPU with AVX-512 (and absl's "WARNING: All log
    messages before absl::InitializeLog()") whatever TF_CPP_MIN_LOG_LEVEL says."""
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as notes:
        os.dup2(notes.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(terminal, 2)
            notes.seek(0)
            os.write(2, notes.read())
            raise
        finally:
            os.dup2(terminal, 2)
            os.close(terminal)


def write_weights(path: Path) -> None:
    """Write the model as JSON weights, for the Python predictor to load in ``init``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"weights": WEIGHTS, "bias": BIAS}, indent=2) + "\n")
