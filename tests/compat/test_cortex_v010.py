"""Cortex v0.10.3's examples, rebuilt (our code, their idioms and signatures), served by inferd.

Each project runs under ``inferd serve`` and under ``inferd deploy``, and its answer is
compared with the model's runtime called directly in this process.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.compat.corpus import CORPUS, Corpus, corpus, corpus_env
from tests.conftest import Server, serve, wait_for
from tests.integration.conftest import Inferd, inferd

__all__ = ["corpus", "corpus_env", "inferd", "serve"]  # fixtures used below

LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]
IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MPG = ("cylinders", "displacement", "horsepower", "weight", "acceleration")


def sample_of(example: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / example / "sample.json").read_text())
    return data


def tensorflow_iris(bucket: Path, sample: dict[str, Any]) -> str:
    import tensorflow as tf

    model = tf.saved_model.load(str(bucket / "tensorflow/iris-classifier/nn/1574000000"))
    inputs = {name: tf.constant([sample[name]], tf.float64) for name in IRIS}
    class_ids = model.signatures["predict"](**inputs)["class_ids"].numpy()
    return LABELS[int(class_ids[0][0])]


def xgboost_iris(bucket: Path, sample: dict[str, Any]) -> str:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(bucket / "xgboost/iris-classifier/gbtree.onnx"))
    row = np.array([[sample[name] for name in IRIS]], np.float32)
    return LABELS[int(session.run(None, {"input": row})[0][0])]


def pytorch_iris(bucket: Path, sample: dict[str, Any]) -> str:
    import torch

    spec = importlib.util.spec_from_file_location(
        "corpus_irisnet", CORPUS / "pytorch-iris-classifier" / "src" / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.IrisNet()
    net.load_state_dict(torch.load(bucket / "pytorch/iris-classifier/weights.pth"))
    net.eval()
    with torch.no_grad():
        scores = net(torch.tensor([[sample[name] for name in IRIS]], dtype=torch.float32))
    return LABELS[int(torch.argmax(scores[0]))]


def sklearn_mpg(bucket: Path, sample: dict[str, Any]) -> float:
    import joblib

    model = joblib.load(bucket / "sklearn/mpg-estimation/linreg.joblib")
    value: float = model.predict(np.array([[sample[name] for name in MPG]], dtype=float)).item()
    return value


@dataclass(frozen=True)
class Case:
    path: str  # the endpoint, /<deployment>/<api>
    api: str
    direct: Callable[[Path, dict[str, Any]], Any]
    relax_pins: bool = False  # its requirements.txt holds 2019 pins that need --relax-pins


CASES = {
    "tensorflow-iris-classifier": Case("/iris/classifier", "classifier", tensorflow_iris),
    "xgboost-iris-classifier": Case("/iris/classifier", "classifier", xgboost_iris),
    "pytorch-iris-classifier": Case("/iris/classifier", "classifier", pytorch_iris, relax_pins=True),
    "sklearn-mpg-estimation": Case("/auto/mpg", "mpg", sklearn_mpg, relax_pins=True),
}
MARKS = {"tensorflow-iris-classifier": [pytest.mark.tensorflow]}
EXAMPLES = [pytest.param(name, marks=MARKS.get(name, []), id=name) for name in CASES]


@pytest.mark.parametrize("example", EXAMPLES)
def test_serves_under_inferd_serve(
    example: str, corpus_env: Corpus, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    case = CASES[example]
    project = corpus_env.project(example, tmp_path)
    server = serve(project, *(["--relax-pins"] if case.relax_pins else []))
    sample = sample_of(example)
    response = server.post(case.path, sample)
    assert response.status_code == 200, response.text
    assert response.json() == case.direct(corpus_env.bucket_dir, sample)


@pytest.mark.parametrize("example", EXAMPLES)
def test_serves_under_inferd_deploy(example: str, corpus_env: Corpus, tmp_path: Path, inferd: Inferd) -> None:
    case = CASES[example]
    inferd.env.update(corpus_env.env)
    project = corpus_env.project(example, tmp_path)
    inferd.run("deploy", str(project), *(["--relax-pins"] if case.relax_pins else []))
    inferd.wait_status(case.api, "live", timeout=120)
    sample = sample_of(example)
    response = inferd.post(case.path, sample)
    assert response.status_code == 200, response.text
    assert response.json() == case.direct(corpus_env.bucket_dir, sample)
    predicted = inferd.run("predict", case.api, str(project / "sample.json"))
    assert json.loads(predicted.stdout) == response.json()


def test_2019_pins_are_one_sentence_without_relax_pins(
    corpus_env: Corpus, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    project = corpus_env.project("sklearn-mpg-estimation", tmp_path)
    server = serve(project, ready=False)
    failed = "failed to start: requirements.txt: scikit-learn==0.21.* cannot be installed on Python 3.11"
    wait_for(lambda: failed in server.log(), 120, f"the pin error; log:\n{server.log()}")
    assert "(the nearest installable version is " in server.log()
    assert "inferd deploy --relax-pins uses scikit-learn" in server.log()
    assert (
        requests.post(
            f"{server.url}/auto/mpg", json=sample_of("sklearn-mpg-estimation"), timeout=10
        ).status_code
        == 503
    )


def test_relaxed_pins_warn_once_each(
    corpus_env: Corpus, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    project = corpus_env.project("sklearn-mpg-estimation", tmp_path)
    server = serve(project, "--relax-pins")
    for pin in ("scikit-learn==0.21.*", "numpy==1.17.*", "pandas==0.25.*", "joblib==0.14.*"):
        assert server.log().count(f"warning: requirements.txt: {pin} relaxed to ") == 1, server.log()


@pytest.mark.tensorflow
def test_tensorflow_iris_probabilities_are_the_runtimes_exactly(
    corpus_env: Corpus, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    import tensorflow as tf

    project = corpus_env.project("tensorflow-iris-classifier", tmp_path)
    server = serve(project)
    sample = sample_of("tensorflow-iris-classifier")
    model = tf.saved_model.load(str(corpus_env.bucket_dir / "tensorflow/iris-classifier/nn/1574000000"))
    direct = model.signatures["predict"](**{n: tf.constant([sample[n]], tf.float64) for n in IRIS})
    answer = server.post("/v1/models/classifier:predict", {"inputs": {n: [sample[n]] for n in IRIS}}).json()
    assert np.array_equal(
        np.array(answer["outputs"]["probabilities"], np.float32), direct["probabilities"].numpy()
    )
    assert answer["outputs"]["classes"] == [[c.decode() for c in direct["classes"].numpy()[0]]]
