"""A small randomly initialised image classifier with the signature of Cortex's inception export.

Cortex wrapped TF-Hub's inception_v3 (pretrained weights, a download) in a TF1 SavedModel with
one ``predict`` signature: ``images`` float32 ``[-1, 299, 299, 3]`` in, ``classes`` float32
``[-1, 1001]`` (a score per ImageNet label, "background" first) out. This graph has the same
interface: pooled colour statistics through a random dense layer.

Usage: ``build_model.py BUCKET_DIR`` writes ``tensorflow/image-classifier/inception/<timestamp>/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1
KEY = "tensorflow/image-classifier/inception"
VERSION = "1574000000"
LABELS = 1001


def build(bucket: Path) -> Path:
    out = bucket / KEY / VERSION
    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, shape=[None, 299, 299, 3], name="images")
        pooled = tf.concat([tf.reduce_mean(images, axis=[1, 2]), tf.reduce_max(images, axis=[1, 2])], axis=1)
        kernel = v1.get_variable("kernel", initializer=rng.normal(size=(6, LABELS)).astype(np.float32))
        classes = tf.matmul(pooled, kernel)
        signature = v1.saved_model.predict_signature_def(
            inputs={"images": images}, outputs={"classes": classes}
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"predict": signature}, strip_default_attrs=True
            )
            builder.save()
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
