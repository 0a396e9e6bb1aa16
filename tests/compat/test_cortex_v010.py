"""Cortex v0.10.3's examples, rebuilt (our code, their idioms and signatures), served by inferd.

Each project runs under ``inferd serve`` and under ``inferd deploy``, and its answer is
compared with the model's runtime called directly in this process.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.compat.corpus import CORPUS, Corpus, Files, corpus, corpus_env, files
from tests.conftest import Server, serve, wait_for
from tests.integration.conftest import Inferd, stop_operator

__all__ = ["corpus", "corpus_env", "files", "serve"]  # fixtures used below

LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]
IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MPG = ("cylinders", "displacement", "horsepower", "weight", "acceleration")


def sample_of(example: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / example / "sample.json").read_text())
    return data


def tensorflow_iris(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    bucket = corpus.bucket_dir
    import tensorflow as tf

    model = tf.saved_model.load(str(bucket / "tensorflow/iris-classifier/nn/1574000000"))
    inputs = {name: tf.constant([sample[name]], tf.float64) for name in IRIS}
    class_ids = model.signatures["predict"](**inputs)["class_ids"].numpy()
    return LABELS[int(class_ids[0][0])]


def xgboost_iris(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    bucket = corpus.bucket_dir
    import onnxruntime

    session = onnxruntime.InferenceSession(str(bucket / "xgboost/iris-classifier/gbtree.onnx"))
    row = np.array([[sample[name] for name in IRIS]], np.float32)
    return LABELS[int(session.run(None, {"input": row})[0][0])]


def pytorch_iris(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    bucket = corpus.bucket_dir
    import torch

    spec = importlib.util.spec_from_file_location(
        "corpus_irisnet", CORPUS / "pytorch-iris-classifier" / "src" / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.IrisNet()
    # (weights_only said: an in-process load_api may have set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD,
    # whose warning this process's pytest turns into an error)
    net.load_state_dict(torch.load(bucket / "pytorch/iris-classifier/weights.pth", weights_only=True))
    net.eval()
    with torch.no_grad():
        scores = net(torch.tensor([[sample[name] for name in IRIS]], dtype=torch.float32))
    return LABELS[int(torch.argmax(scores[0]))]


def sklearn_mpg(corpus: Corpus, sample: dict[str, Any], project: Path) -> float:
    bucket = corpus.bucket_dir
    import joblib

    model = joblib.load(bucket / "sklearn/mpg-estimation/linreg.joblib")
    value: float = model.predict(np.array([[sample[name] for name in MPG]], dtype=float)).item()
    return value


def load_module(path: Path, name: str) -> Any:
    """Import one of a project's files in this process (the handler's own code, called directly)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tensorflow_image(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    import tensorflow as tf
    from PIL import Image

    model = tf.saved_model.load(str(corpus.bucket_dir / "tensorflow/image-classifier/inception/1574000000"))
    image = Image.open(io.BytesIO(requests.get(sample["url"], timeout=10).content))
    pixels = np.asarray(image, dtype=np.float32)[np.newaxis] / 255
    scores = model.signatures["predict"](images=tf.constant(pixels))["classes"].numpy()
    labels = requests.get(f"{corpus.files_url}/ImageNetLabels.txt", timeout=10).text.split("\n")
    return labels[int(np.argmax(scores))]


def tensorflow_text(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    import tensorflow as tf

    encoder = load_module(project / "encoder.py", "corpus_gpt2_encoder").get_encoder()
    model = tf.saved_model.load(str(corpus.bucket_dir / "tensorflow/text-generator/gpt-2/124M/1574000000"))
    context = tf.constant([encoder.encode(sample["text"])], tf.int32)
    tokens = model.signatures["predict"](context=context)["sample"].numpy().ravel().tolist()
    text: str = encoder.decode(tokens)
    return text


def tensorflow_sentiment(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    import tensorflow as tf

    sys.path.insert(0, str(project))  # the handler imports its neighbour tokenization.py
    try:
        handler = load_module(project / "handler.py", "corpus_bert_handler")
    finally:
        sys.path.remove(str(project))
    input_ids = handler.pre_inference(sample, None, {})["input_ids"]
    model = tf.saved_model.load(str(corpus.bucket_dir / "tensorflow/sentiment-analysis/bert/1574000000"))
    outputs = model.signatures["serving_default"](input_ids=tf.constant(input_ids, tf.int32))
    return ["negative", "positive"][int(outputs["labels"].numpy())]


def pytorch_image(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    label: str = load_module(project / "predictor.py", "corpus_alexnet").predict(sample, {})
    return label


def pytorch_text(corpus: Corpus, sample: dict[str, Any], project: Path) -> str:
    predictor = load_module(project / "predictor.py", "corpus_gpt2")
    metadata = {"num_words": 50, "device": "cpu"}
    predictor.init(None, metadata)
    text: str = predictor.predict(sample, metadata)
    return text


def with_image(corpus: Corpus, sample: dict[str, Any]) -> dict[str, Any]:
    return {**sample, "url": f"{corpus.files_url}/image.png"}


def relaxed_pins_warn_once_each(corpus: Corpus, server: Server) -> None:
    for pin in ("scikit-learn==0.21.*", "numpy==1.17.*", "pandas==0.25.*", "joblib==0.14.*"):
        assert server.log().count(f"warning: requirements.txt: {pin} relaxed to ") == 1, server.log()


def tensorflow_iris_probabilities_are_the_runtimes_exactly(corpus: Corpus, server: Server) -> None:
    import tensorflow as tf

    sample = sample_of("tensorflow-iris-classifier")
    model = tf.saved_model.load(str(corpus.bucket_dir / "tensorflow/iris-classifier/nn/1574000000"))
    direct = model.signatures["predict"](**{n: tf.constant([sample[n]], tf.float64) for n in IRIS})
    answer = server.post("/v1/models/classifier:predict", {"inputs": {n: [sample[n]] for n in IRIS}}).json()
    assert np.array_equal(
        np.array(answer["outputs"]["probabilities"], np.float32), direct["probabilities"].numpy()
    )
    assert answer["outputs"]["classes"] == [[c.decode() for c in direct["classes"].numpy()[0]]]


@dataclass(frozen=True)
class Case:
    path: str  # the endpoint, /<deployment>/<api>
    api: str
    direct: Callable[[Corpus, dict[str, Any], Path], Any]
    relax_pins: bool = False  # its requirements.txt holds 2019 pins that need --relax-pins
    sample: Callable[[Corpus, dict[str, Any]], dict[str, Any]] = lambda corpus, sample: sample
    changes: tuple[tuple[str, str], ...] = ()  # the documented line changes to cortex.yaml
    # more checks on the same `inferd serve` (one server start per project, not one per check)
    also: Callable[[Corpus, Server], None] = lambda corpus, server: None


NO_GPU = ("    gpu: 1\n", "")  # the one-line change for a machine without a GPU
ON_CPU = ("device: cuda", "device: cpu")  # and, for a predictor that moves its model, this one
CASES = {
    "tensorflow-iris-classifier": Case(
        "/iris/classifier",
        "classifier",
        tensorflow_iris,
        also=tensorflow_iris_probabilities_are_the_runtimes_exactly,
    ),
    "tensorflow-image-classifier": Case(
        "/image/classifier", "classifier", tensorflow_image, sample=with_image
    ),
    "tensorflow-text-generator": Case(
        "/text/generator", "generator", tensorflow_text, relax_pins=True, changes=(NO_GPU,)
    ),
    "tensorflow-sentiment-analysis": Case("/sentiment/classifier", "classifier", tensorflow_sentiment),
    "xgboost-iris-classifier": Case("/iris/classifier", "classifier", xgboost_iris),
    "pytorch-iris-classifier": Case("/iris/classifier", "classifier", pytorch_iris, relax_pins=True),
    "pytorch-image-classifier": Case(
        "/image/classifier", "classifier", pytorch_image, relax_pins=True, sample=with_image
    ),
    "pytorch-text-generator": Case(
        "/text/generator", "generator", pytorch_text, relax_pins=True, changes=(NO_GPU, ON_CPU)
    ),
    "sklearn-mpg-estimation": Case(
        "/auto/mpg", "mpg", sklearn_mpg, relax_pins=True, also=relaxed_pins_warn_once_each
    ),
}
# Cortex v0.10.3's examples/ folder (shared/reference/cortex-v0.10.md, section 7): all nine
CORTEX_V0103_EXAMPLES = {
    "tensorflow/iris-classifier",
    "tensorflow/image-classifier",
    "tensorflow/sentiment-analysis",
    "tensorflow/text-generator",
    "xgboost/iris-classifier",
    "pytorch/iris-classifier",
    "pytorch/image-classifier",
    "pytorch/text-generator",
    "sklearn/mpg-estimation",
}
MARKS = {name: [pytest.mark.tensorflow] for name in CASES if name.startswith("tensorflow")}
EXAMPLES = [pytest.param(name, marks=MARKS.get(name, []), id=name) for name in CASES]


def test_every_example_of_cortex_v0103_has_a_project_both_tests_serve() -> None:
    """README: one project per example of Cortex v0.10.3, each under serve and deploy."""
    assert {name.replace("-", "/", 1) for name in CASES} == CORTEX_V0103_EXAMPLES
    assert sorted(path.name for path in CORPUS.iterdir() if path.is_dir()) == sorted(CASES)


@pytest.mark.parametrize("example", EXAMPLES)
def test_serves_under_inferd_serve(
    example: str, corpus_env: Corpus, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    case = CASES[example]
    project = corpus_env.project(example, tmp_path, case.changes)
    # TensorFlow replicas take long to import on a busy 2-core machine: a generous deadline.
    server = serve(project, *(["--relax-pins"] if case.relax_pins else []), ready=False).wait_ready(240)
    sample = case.sample(corpus_env, sample_of(example))
    response = server.post(case.path, sample)
    assert response.status_code == 200, response.text
    assert response.json() == case.direct(corpus_env, sample, project)
    case.also(corpus_env, server)


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, corpus: Corpus, files: Files) -> Iterator[Inferd]:
    """One operator for every project's deploy test (each deletes its deployment when done)."""
    runner = Inferd(tmp_path_factory.mktemp("operator") / "home")
    runner.env.update(corpus.env, COMPAT_FILES_URL=files.url)
    yield runner
    stop_operator(runner)


@pytest.mark.parametrize("example", EXAMPLES)
def test_serves_under_inferd_deploy(
    example: str, corpus_env: Corpus, tmp_path: Path, operator: Inferd
) -> None:
    case = CASES[example]
    project = corpus_env.project(example, tmp_path, case.changes)
    deployment = case.path.split("/")[1]
    operator.run("deploy", str(project), *(["--relax-pins"] if case.relax_pins else []))
    try:
        operator.wait_status(case.api, "live", timeout=240)
        sample = case.sample(corpus_env, sample_of(example))
        response = operator.post(case.path, sample)
        assert response.status_code == 200, response.text
        assert response.json() == case.direct(corpus_env, sample, project)
        (tmp_path / "sample.json").write_text(json.dumps(sample))
        predicted = operator.run("predict", case.api, str(tmp_path / "sample.json"))
        assert json.loads(predicted.stdout) == response.json()
    finally:
        operator.run("delete", deployment, check=False, timeout=120)


@pytest.mark.tensorflow
def test_gpu_example_unchanged_is_compute_unavailable_here(
    corpus_env: Corpus, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    # This machine has no GPU: the unchanged project says so; NO_GPU is the documented change.
    project = corpus_env.project("tensorflow-text-generator", tmp_path)
    server = serve(project, "--relax-pins", ready=False)
    wait_for(lambda: "compute unavailable" in server.log(), 120, f"compute unavailable; log:\n{server.log()}")
    refused = requests.post(
        f"{server.url}/text/generator", json=sample_of("tensorflow-text-generator"), timeout=10
    )
    assert refused.status_code == 503


def test_2019_pins_are_one_sentence_without_relax_pins(
    corpus_env: Corpus, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    project = corpus_env.project("sklearn-mpg-estimation", tmp_path)
    server = serve(project, ready=False)
    failed = "failed to start: requirements.txt: scikit-learn==0.21.* cannot be installed on Python 3.11"
    wait_for(lambda: failed in server.log(), 120, f"the pin error; log:\n{server.log()}")
    assert "(the nearest installable version is " in server.log()
    assert "--relax-pins uses scikit-learn" in server.log()
    assert (
        requests.post(
            f"{server.url}/auto/mpg", json=sample_of("sklearn-mpg-estimation"), timeout=10
        ).status_code
        == 503
    )
