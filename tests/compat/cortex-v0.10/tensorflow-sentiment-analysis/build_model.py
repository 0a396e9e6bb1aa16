"""A tiny randomly initialised text classifier with the signature of Cortex's BERT export.

Cortex fine-tuned TF-Hub's BERT (pretrained weights, a download) and exported it with an
estimator: one ``serving_default`` signature, ``input_ids`` int32 ``[1, 128]`` in,
``probabilities`` float32 ``[1, 2]`` (log-softmax) and ``labels`` int32 (a scalar) out. This
graph keeps that interface: a random embedding of up to 64 token ids, averaged, through a
random dense layer.

Usage: ``build_model.py BUCKET_DIR`` writes ``tensorflow/sentiment-analysis/bert/<timestamp>/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1
KEY = "tensorflow/sentiment-analysis/bert"
VERSION = "1574000000"
VOCABULARY = 64
MAX_SEQ_LENGTH = 128


def build(bucket: Path) -> Path:
    rng = np.random.default_rng(9)
    out = bucket / KEY / VERSION
    graph = tf.Graph()
    with graph.as_default():
        input_ids = v1.placeholder(tf.int32, [1, MAX_SEQ_LENGTH], name="input_ids")
        table = v1.get_variable("embeddings", initializer=rng.normal(size=(VOCABULARY, 8)).astype(np.float32))
        weights = v1.get_variable("output_weights", initializer=rng.normal(size=(8, 2)).astype(np.float32))
        mask = tf.cast(tf.not_equal(input_ids, 0), tf.float32)[..., tf.newaxis]
        pooled = tf.reduce_sum(tf.gather(table, input_ids) * mask, axis=1) / tf.reduce_sum(mask, axis=1)
        log_probs = tf.nn.log_softmax(tf.matmul(pooled, weights), axis=-1)
        labels = tf.squeeze(tf.argmax(log_probs, axis=-1, output_type=tf.int32))
        signature = v1.saved_model.predict_signature_def(
            inputs={"input_ids": input_ids}, outputs={"probabilities": log_probs, "labels": labels}
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.SERVING],
                signature_def_map={"serving_default": signature},
                strip_default_attrs=True,
            )
            builder.save()
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
