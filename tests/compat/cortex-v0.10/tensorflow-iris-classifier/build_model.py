"""Export a TF1 graph-mode SavedModel with the signature of Cortex's iris DNNClassifier export.

Cortex's notebook trained ``tf.estimator.DNNClassifier(hidden_units=[10, 10])`` on TF 1.14 and
exported it with one float64 ``[None]`` placeholder per feature. This script builds the same
interface with ``tf.compat.v1`` (placeholders, a Session, ``SavedModelBuilder``), with weights
from a scikit-learn MLP of the same layer sizes (trained in a second, no download):

- inputs ``sepal_length``, ``sepal_width``, ``petal_length``, ``petal_width``: float64 ``[-1]``
- ``predict``: ``class_ids`` int64 ``[-1, 1]``, ``classes`` string ``[-1, 1]``, ``logits`` and
  ``probabilities`` float32 ``[-1, 3]``, ``all_class_ids`` int32 ``[-1, 3]``, ``all_classes``
  string ``[-1, 3]``
- ``classification`` and ``serving_default``: ``classes`` string ``[-1, 3]``, ``scores`` float32
  ``[-1, 3]`` (method ``tensorflow/serving/classify``)

Usage: ``build_model.py BUCKET_DIR`` writes ``tensorflow/iris-classifier/nn/<timestamp>/`` under
BUCKET_DIR, the layout of ``s3://cortex-examples``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier

v1 = tf.compat.v1
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
KEY = "tensorflow/iris-classifier/nn"
VERSION = "1574000000"


def build(bucket: Path) -> Path:
    iris = load_iris()
    mlp = MLPClassifier(hidden_layer_sizes=(10, 10), max_iter=2000, random_state=0)
    mlp.fit(iris.data, iris.target)
    out = bucket / KEY / VERSION
    graph = tf.Graph()
    with graph.as_default():
        placeholders = {name: v1.placeholder(tf.float64, shape=[None], name=name) for name in FEATURES}
        layer = tf.cast(tf.stack([placeholders[name] for name in FEATURES], axis=1), tf.float32)
        for index, (weights, bias) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
            kernel = v1.get_variable(f"dense_{index}/kernel", initializer=weights.astype(np.float32))
            offset = v1.get_variable(f"dense_{index}/bias", initializer=bias.astype(np.float32))
            layer = tf.matmul(layer, kernel) + offset
            if index < len(mlp.coefs_) - 1:
                layer = tf.nn.relu(layer)
        logits = layer
        probabilities = tf.nn.softmax(logits)
        class_ids = tf.expand_dims(tf.argmax(logits, axis=1), -1)
        batch = tf.shape(logits)[0]
        all_class_ids = tf.tile(tf.range(3)[tf.newaxis, :], [batch, 1])
        all_classes = tf.strings.as_string(all_class_ids)
        inputs = {name: v1.saved_model.build_tensor_info(p) for name, p in placeholders.items()}
        info = v1.saved_model.build_tensor_info
        predict = v1.saved_model.build_signature_def(
            inputs=inputs,
            outputs={
                "class_ids": info(class_ids),
                "classes": info(tf.strings.as_string(class_ids)),
                "logits": info(logits),
                "probabilities": info(probabilities),
                "all_class_ids": info(all_class_ids),
                "all_classes": info(all_classes),
            },
            method_name=v1.saved_model.PREDICT_METHOD_NAME,
        )
        classify = v1.saved_model.build_signature_def(
            inputs=inputs,
            outputs={"classes": info(all_classes), "scores": info(probabilities)},
            method_name=v1.saved_model.CLASSIFY_METHOD_NAME,
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.SERVING],
                signature_def_map={
                    "predict": predict,
                    "classification": classify,
                    "serving_default": classify,
                },
                strip_default_attrs=True,
            )
            builder.save()
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
