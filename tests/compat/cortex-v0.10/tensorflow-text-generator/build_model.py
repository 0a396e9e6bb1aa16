"""A tiny randomly initialised "GPT-2" with the signature of Cortex's text-generator export,
and the encoder.json / vocab.bpe files its handler reads.

Cortex exported OpenAI's 124M GPT-2 sampling graph (pretrained weights, a download) with one
``predict`` signature: ``context`` int32 ``[1, -1]`` in, ``sample`` int32 ``[1, -1]`` (the
context followed by generated tokens) out. This graph keeps that interface: a random embedding
and projection pick, greedily, one next token per context token. Its vocabulary is GPT-2's
256 byte symbols plus a few merges, so the handler's byte-level BPE runs for real.

Usage: ``build_model.py BUCKET_DIR`` writes ``tensorflow/text-generator/gpt-2/124M/<timestamp>/``
and ``text-generator/gpt-2/{encoder.json,vocab.bpe}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1
KEY = "tensorflow/text-generator/gpt-2/124M"
FILES = "text-generator/gpt-2"
VERSION = "1574000000"
MERGES = [("Ġ", "l"), ("e", "a"), ("i", "n"), ("in", "g"), ("m", "a"), ("c", "h"), ("ma", "ch"), ("Ġl", "ea")]


def symbols() -> list[str]:
    """GPT-2's byte alphabet: printable Latin-1 bytes as themselves, the others shifted past 255."""
    visible = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    shifted = iter(range(256, 512))
    return [chr(b) if b in visible else chr(next(shifted)) for b in range(256)]


def build(bucket: Path) -> Path:
    vocabulary = {symbol: index for index, symbol in enumerate(symbols())}
    for first, second in MERGES:
        vocabulary[first + second] = len(vocabulary)
    files = bucket / FILES
    files.mkdir(parents=True, exist_ok=True)
    (files / "encoder.json").write_text(json.dumps(vocabulary))
    (files / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    size = len(vocabulary)
    rng = np.random.default_rng(5)
    out = bucket / KEY / VERSION
    graph = tf.Graph()
    with graph.as_default():
        context = v1.placeholder(tf.int32, [1, None], name="context")
        table = v1.get_variable("wte", initializer=rng.normal(size=(size, 16)).astype(np.float32))
        head = v1.get_variable("head", initializer=rng.normal(size=(16, size)).astype(np.float32))
        logits = tf.einsum("btd,dv->btv", tf.gather(table, context), head)
        following = tf.argmax(logits, axis=-1, output_type=tf.int32)
        sample = tf.concat([context, following], axis=1)
        signature = v1.saved_model.predict_signature_def(
            inputs={"context": context}, outputs={"sample": sample}
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.SERVING],
                signature_def_map={"predict": signature},
                strip_default_attrs=True,
            )
            builder.save()
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
