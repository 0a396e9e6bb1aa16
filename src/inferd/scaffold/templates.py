"""The text of the files ``inferd init`` writes (``string.Template``: ``$name`` placeholders)."""

from __future__ import annotations

from string import Template

CONFIG_HEAD = """\
# $deployment: written by `inferd init` (the Cortex v0.10 schema; unknown keys are errors).
#   inferd serve . --reload    serve it; saved edits roll out with no failed request
#   inferd test .              sample*.json through the API in-process (expected*.json must match)
#   inferd validate .          check this file without serving

- kind: deployment
  name: $deployment            # the first part of each endpoint: POST /$deployment/<api>

- kind: api
  name: $api                   # POST /$deployment/$api
"""

CONFIG_ONNX = """\
  onnx:
    model: models/$model       # a .onnx file here, or s3://, gs://, http(s)://
    request_handler: handlers/$api.py   # optional: pre_inference / post_inference
    # metadata: {}             # handed to the handler's hooks as `metadata`
"""

SIGNATURE_KEY_LINE = (
    "    # signature_key: serving_default    # which signature to serve, when the model has several\n"
)
CONFIG_TENSORFLOW = (
    """\
  tensorflow:
    model: models/$model       # a SavedModel folder (or its .zip), or s3://, gs://, http(s)://
    request_handler: handlers/$api.py   # optional: pre_inference / post_inference
"""
    + SIGNATURE_KEY_LINE
    + """\
    # metadata: {}             # handed to the handler's hooks as `metadata`
"""
)

CONFIG_PREDICTOR = """\
  predictor:
    path: predictor.py         # defines init(model_path, metadata) and predict(sample, metadata)
    model: models/$model       # handed to init() as model_path
    # metadata: {}             # handed to init() and predict() as `metadata`
"""

CONFIG_TAIL = """\
  # compute:
  #   min_replicas: 1          # replicas kept running, each answering one request at a time
  #   max_replicas: 4          # autoscaling adds replicas up to this when requests queue
"""

HANDLER_HEAD = '''\
"""Request handler of api '$api': the request's JSON -> model inputs, model outputs -> the answer.

Both hooks are optional. Each replica imports this file once and answers one request at a
time, so module globals (like `labels`) are safe. While `inferd serve . --reload` runs, saving
this file rolls the API over to the new code; `inferd test .` runs sample.json through it.
"""
'''

DEMO_ONNX_HANDLER = '''
labels = ["setosa", "versicolor", "virginica"]


def pre_inference(sample, signature, metadata):
    """The model's inputs for one request.

    sample:    the parsed JSON body, e.g. {"sepal_length": 5.1, ...}
    signature: the model's inputs (onnxruntime NodeArgs: signature[0].name, .shape, .type)
    metadata:  the api's `metadata:` from cortex.yaml
    Returns {input name: list or ndarray}; inferd casts it to the input's dtype and shape.
    """
    features = [sample["sepal_length"], sample["sepal_width"], sample["petal_length"], sample["petal_width"]]
    return {signature[0].name: [features]}


def post_inference(prediction, signature, metadata):
    """The answer (anything JSON: a dict, list, string or number; numpy values are fine).

    prediction: the model's outputs in order (here: scores [rows, 3], label [rows])
    signature:  the model's outputs (NodeArgs)
    """
    scores, label = prediction
    return labels[int(label[0])]
'''

DEMO_TENSORFLOW_HANDLER = '''
labels = ["setosa", "versicolor", "virginica"]


def pre_inference(sample, signature, metadata):
    """The model's inputs for one request.

    sample:    the parsed JSON body, e.g. {"sepal_length": 5.1, ...}
    signature: the SavedModel's signatures (name -> SignatureDef, as TF Serving describes them)
    metadata:  the api's `metadata:` from cortex.yaml
    Returns {input name: list or ndarray}; inferd casts it to the input's dtype and shape.
    """
    features = [sample["sepal_length"], sample["sepal_width"], sample["petal_length"], sample["petal_width"]]
    return {"features": [features]}


def post_inference(prediction, signature, metadata):
    """The answer (anything JSON: a dict, list, string or number; numpy values are fine).

    prediction: {output name: values flattened to one list} (here: "scores" and "label")
    signature:  the SavedModel's signatures
    """
    return labels[int(prediction["label"][0])]
'''

ANY_ONNX_HANDLER = '''

def pre_inference(sample, signature, metadata):
    """The model's inputs for one request.

    sample:    the parsed JSON body (sample.json holds one of the right shape, all zeros)
    signature: the model's inputs (onnxruntime NodeArgs: signature[0].name, .shape, .type)
    metadata:  the api's `metadata:` from cortex.yaml
    Returns {input name: list or ndarray}; inferd casts it to the input's dtype and shape.
    """
    return sample


def post_inference(prediction, signature, metadata):
    """The answer (anything JSON: a dict, list, string or number; numpy values are fine).

    prediction: the model's outputs in order (prediction[0] is the first output's rows)
    signature:  the model's outputs (NodeArgs)
    """
    return {output.name: value for output, value in zip(signature, prediction)}
'''

ANY_TENSORFLOW_HANDLER = '''

def pre_inference(sample, signature, metadata):
    """The model's inputs for one request.

    sample:    the parsed JSON body (sample.json holds one of the right shape, all zeros)
    signature: the SavedModel's signatures (name -> SignatureDef, as TF Serving describes them)
    metadata:  the api's `metadata:` from cortex.yaml
    Returns {input name: list or ndarray}; inferd casts it to the input's dtype and shape.
    """
    return sample


def post_inference(prediction, signature, metadata):
    """The answer (anything JSON: a dict, list, string or number; numpy values are fine).

    prediction: {output name: values flattened to one list}
    signature:  the SavedModel's signatures
    """
    return prediction
'''

PREDICTOR_HEAD = '''\
"""Predictor of api '$api': init() once per replica, then predict() for each request.

Each replica answers one request at a time, so module globals are safe. While
`inferd serve . --reload` runs, saving this file rolls the API over to the new code;
`inferd test .` runs sample.json through it without a server.
"""
'''

DEMO_PREDICTOR = '''
import json

import numpy as np

labels = ["setosa", "versicolor", "virginica"]
weights = bias = None


def init(model_path, metadata):
    """Load the model once. model_path: the api's `model:` (a local path); metadata: its `metadata:`."""
    global weights, bias
    with open(model_path) as file:
        model = json.load(file)
    weights, bias = np.array(model["weights"]), np.array(model["bias"])


def predict(sample, metadata):
    """The answer to one request (anything JSON). sample: the parsed JSON body."""
    features = [sample["sepal_length"], sample["sepal_width"], sample["petal_length"], sample["petal_width"]]
    scores = np.array(features) @ weights + bias
    return labels[int(np.argmax(scores))]
'''

ANY_PREDICTOR = '''
import os

model = None


def init(model_path, metadata):
    """Load the model once. model_path: the api's `model:` (a local path); metadata: its `metadata:`."""
    global model
    model = model_path  # load it here, e.g. model = joblib.load(model_path)


def predict(sample, metadata):
    """The answer to one request (anything JSON). sample: the parsed JSON body."""
    return {"model": os.path.basename(model), "sample": sample}  # call your model here
'''

DEMO_TEST = '''\
"""Your own tests of api '$api', in-process with the real model: run `pytest` in this folder,
or this file with `python` where pytest is not installed (inferd does not install it)."""

from pathlib import Path

from inferd.testing import load_api

api = load_api(Path(__file__).parent)


def test_a_short_petal_is_a_setosa():
    sample = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    assert api.predict(sample) == "setosa"


def test_a_long_petal_is_a_virginica():
    sample = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1}
    assert api.predict(sample) == "virginica"


if __name__ == "__main__":
    tests = [test for name, test in sorted(globals().items()) if name.startswith("test_")]
    for test in tests:
        test()
    print(f"{len(tests)} passed")
'''


def render(text: str, **values: str) -> str:
    """``text`` with its ``$name`` placeholders filled in."""
    return Template(text).substitute(values)
