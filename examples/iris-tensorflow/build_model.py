"""Build a TensorFlow SavedModel shaped like Cortex's iris DNNClassifier export.

Four named float inputs (sepal_length, sepal_width, petal_length, petal_width), each [None];
outputs class_ids int64[None, 1], probabilities float[None, 3], logits and classes; signatures
"predict" and "serving_default". The weights come from a scikit-learn logistic regression
(no download, no long training). Written as models/iris/1 (a numbered version folder, as TF
Serving and Cortex expected).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class IrisModel(tf.Module):  # type: ignore[misc]
    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.weights = tf.Variable(weights.astype(np.float32))
        self.bias = tf.Variable(bias.astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name=n) for n in FEATURES])  # type: ignore[untyped-decorator]
    def predict(
        self,
        sepal_length: tf.Tensor,
        sepal_width: tf.Tensor,
        petal_length: tf.Tensor,
        petal_width: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        features = tf.stack([sepal_length, sepal_width, petal_length, petal_width], axis=1)
        logits = tf.matmul(features, self.weights) + self.bias
        class_ids = tf.argmax(logits, axis=1, output_type=tf.int64)[:, tf.newaxis]
        return {
            "class_ids": class_ids,
            "classes": tf.strings.as_string(class_ids),
            "logits": logits,
            "probabilities": tf.nn.softmax(logits),
        }


def build(out: Path) -> None:
    iris = load_iris()
    fitted = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    model = IrisModel(fitted.coef_.T, fitted.intercept_)
    signatures = {"predict": model.predict, "serving_default": model.predict}
    # AutoGraph imports the code it generates from temporary files it removes: no bytecode of
    # them left in $TMPDIR/__pycache__
    sys.dont_write_bytecode = True
    tf.saved_model.save(model, str(out), signatures=signatures)


if __name__ == "__main__":
    target = Path(__file__).parent / "models" / "iris" / "1"
    if "--force" in sys.argv or not (target / "saved_model.pb").exists():
        build(target)
        print(f"built {target}")
