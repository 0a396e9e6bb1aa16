"""What Cortex users wrote beyond v0.10's examples, served by inferd: YAML anchors shared by
several APIs, a TensorFlow checkpoint folder with the export inside, a deploy script importing
``from cortex import Client``, a requirements.txt naming what Cortex pre-installed, endpoints
such as /v1/iris, values missing size-1 dimensions, dicts keyed by numpy values, and Cortex
v0.9's flat api form with its two-argument handlers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests

from inferd.engine.packages import packages_dir
from tests.conftest import Server, example, make_project, serve
from tests.integration.conftest import Inferd, inferd

__all__ = ["inferd", "serve"]

SAMPLE = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
HANDLER = """labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def pre_inference(sample, signature, metadata):
    return {signature[0].name: [sample["sepal_length"], sample["sepal_width"],
                                sample["petal_length"], sample["petal_width"]]}


def post_inference(prediction, signature, metadata):
    return metadata["prefix"] + labels[prediction[0][0]]
"""
ANCHORS = """# two APIs, one model block and one compute block between them
- kind: deployment
  name: iris

- kind: api
  name: small
  onnx: &iris
    model: models/iris.onnx
    request_handler: handler.py
    metadata: {prefix: "label: "}
  compute: &compute
    cpu: 1
    mem: 256Mi
    max_replicas: 2

- kind: api
  name: large
  onnx: *iris
  compute:
    <<: *compute
    cpu: "500m"   # overrides the anchor's cpu
"""


def test_yaml_anchors_and_merge_keys(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p", ANCHORS, {"handler.py": HANDLER}, {"models/iris.onnx": iris_onnx_model}
    )
    server = serve(project)
    for name in ("small", "large"):
        answer = server.post(f"/iris/{name}", SAMPLE)
        assert answer.status_code == 200, answer.text
        assert answer.json() == "label: iris-setosa"


TF_HANDLER = """labels = ["setosa", "versicolor", "virginica"]


def post_inference(prediction, signature, metadata):
    return labels[int(prediction["class_ids"][0])]
"""


@pytest.mark.tensorflow
def test_tensorflow_checkpoint_folder_with_the_export_inside(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    # Cortex's packaging docs: upload "a checkpoint directory containing the export directory
    # (which is usually the case if you used estimator.train_and_evaluate)".
    saved_model = example("iris-tensorflow") / "models" / "iris" / "1"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: iris\n- kind: api\n  name: classifier\n  tensorflow:\n"
        "    model: bert\n    request_handler: handler.py\n",
        {
            "handler.py": TF_HANDLER,
            "bert/checkpoint": 'model_checkpoint_path: "model.ckpt-500"\n',
            "bert/graph.pbtxt": "node {}\n",
            # an older export that cannot load: serving it would fail the API
            "bert/export/best_exporter/1568240000/saved_model.pb": "not a SavedModel",
        },
        {
            "bert/export/best_exporter/1568244606": saved_model,
            "bert/model.ckpt-500.index": saved_model / "variables" / "variables.index",
        },
    )
    answer = serve(project).post("/iris/classifier", SAMPLE)
    assert answer.status_code == 200, answer.text
    assert answer.json() == "setosa"


CLIENT_SCRIPT = """import sys

import requests
from cortex import Client

labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def pre_inference(sample, signature, metadata):
    return {signature[0].name: [sample["sepal_length"], sample["sepal_width"],
                                sample["petal_length"], sample["petal_width"]]}


def post_inference(prediction, signature, metadata):
    return labels[prediction[0][0]]


cortex = Client(
    aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
    aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    operator_url="https://a1b2c3.elb.us-west-2.amazonaws.com",
)
api_url = cortex.deploy(
    deployment_name="iris",
    api_name="classifier",
    model_path=sys.argv[1],
    model_format="onnx",
    pre_inference=pre_inference,
    post_inference=post_inference,
)
print(api_url)
print(requests.post(api_url, json=json_sample).json())
"""


def test_a_deploy_script_importing_cortex_client(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    script = tmp_path / "deploy.py"
    script.write_text(CLIENT_SCRIPT.replace("json_sample", json.dumps(SAMPLE)))
    model = tmp_path / "iris.onnx"
    shutil.copy(iris_onnx_model, model)
    done = subprocess.run(
        [sys.executable, str(script), str(model)],
        env=inferd.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [f"{inferd.url}/iris/classifier", "iris-setosa"]
    assert inferd.status("iris/classifier")["status"] == "live"


def test_the_client_module_of_cortexs_package() -> None:
    # Cortex's package was cortex/client.py re-exported by cortex/__init__.py, so 2019 scripts
    # wrote `from cortex.client import Client` or `import cortex.client` as often as the docs'
    # `from cortex import Client`.
    import cortex
    import cortex.client
    from cortex.client import Client
    from inferd.sdk import Client as InferdClient

    assert Client is cortex.client.Client is cortex.Client is InferdClient


def test_requirements_naming_packages_inferd_runs_with(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path, inferd_home: Path
) -> None:
    # Cortex pre-installed tensorflow and xgboost; inferd has their CPU builds, which meet such
    # lines: pip fetches nothing (the full packages would never be imported).
    project = make_project(
        tmp_path / "p",
        ANCHORS,
        {"handler.py": HANDLER, "requirements.txt": "tensorflow\nxgboost\nnumpy\nonnxruntime\n"},
        {"models/iris.onnx": iris_onnx_model},
    )
    answer = serve(project).post("/iris/small", SAMPLE)
    assert answer.status_code == 200, answer.text
    environment = packages_dir(inferd_home, project / "requirements.txt")
    assert (environment / ".complete").is_file()
    assert sorted(path.name for path in environment.iterdir() if not path.name.startswith(".")) == []


VERSIONED = """- kind: deployment
  name: iris
- kind: api
  name: first
  endpoint: /v1/iris
  onnx: {model: models/iris.onnx, request_handler: handler.py, metadata: {prefix: "v1 "}}
- kind: api
  name: second
  endpoint: v2/iris
  onnx: {model: models/iris.onnx, request_handler: handler.py, metadata: {prefix: "v2 "}}
- kind: api
  name: third
  endpoint: /metrics/iris
  onnx: {model: models/iris.onnx, request_handler: handler.py, metadata: {prefix: "m "}}
"""


def test_versioned_endpoints_beside_the_protocol_routes(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p", VERSIONED, {"handler.py": HANDLER}, {"models/iris.onnx": iris_onnx_model}
    )
    server = serve(project)
    assert server.post("/v1/iris", SAMPLE).json() == "v1 iris-setosa"
    assert server.post("/v2/iris", SAMPLE).json() == "v2 iris-setosa"
    # what a deployment named metrics (or docs, healthz) gets: the gateway answers /metrics alone
    # (was: "endpoint: /metrics/iris is reserved by inferd", so such a project did not deploy)
    assert server.post("/metrics/iris", SAMPLE).json() == "m iris-setosa"
    assert "inferd_requests" in requests.get(f"{server.url}/metrics", timeout=10).text
    # the V2 and TF Serving routes still answer beside them
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/v2/models/second", timeout=10).json()["name"] == "second"
    status = requests.get(f"{server.url}/v1/models/first", timeout=10).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


def build_unit_models(folder: Path) -> None:
    """A one-feature regressor (x [N, 1] -> 2x + 1) and a 2x2 one-channel image summer."""
    from onnx import TensorProto, helper, numpy_helper, save_model

    folder.mkdir(parents=True, exist_ok=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    weights = [numpy_helper.from_array(np.array([[2.0]], np.float32), "w")]
    weights.append(numpy_helper.from_array(np.array([1.0], np.float32), "b"))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    graph = helper.make_graph(nodes, "line", [x], [y], initializer=weights)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 2, 2, 1])
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, [None])
    summed = helper.make_node("ReduceSum", ["image", "axes"], ["total"], keepdims=0)
    axes = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")
    pixels = helper.make_graph([summed], "pixels", [image], [total], initializer=[axes])
    for name, model_graph in (("line.onnx", graph), ("pixels.onnx", pixels)):
        model = helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        save_model(model, str(folder / name))


UNIT_DIMENSIONS = """- kind: deployment
  name: shapes
- kind: api
  name: line
  onnx: {model: models/line.onnx, request_handler: line.py}
- kind: api
  name: pixels
  onnx: {model: models/pixels.onnx, request_handler: pixels.py}
"""


def test_values_missing_size_one_dimensions(tmp_path: Path, serve: Callable[..., Server]) -> None:
    # Cortex reshaped a handler's value to the model's shape: a bare number for a one-feature
    # model, a 2-D image for a [N, H, W, 1] input. inferd adds the size-1 dimensions.
    project = make_project(
        tmp_path / "p",
        UNIT_DIMENSIONS,
        {
            "line.py": "def pre_inference(sample, signature, metadata):\n    return sample['x']\n\n"
            "def post_inference(prediction, signature, metadata):\n    return float(prediction[0][0][0])\n",
            "pixels.py": "def pre_inference(sample, signature, metadata):\n    return sample['pixels']\n",
        },
    )
    build_unit_models(project / "models")
    server = serve(project)
    assert server.post("/shapes/line", {"x": 3}).json() == 7.0
    assert server.post("/shapes/pixels", {"pixels": [[1, 2], [3, 4]]}).json() == [[10.0]]
    refused = server.post("/shapes/pixels", {"pixels": [1, 2, 3, 4]})  # flat: never guessed
    assert refused.status_code == 400
    assert "expected shape [-1, 2, 2, 1] (float32), got shape [4]" in refused.json()["error"]


PROBABILITIES = """import joblib


def init(model_path, metadata):
    global model
    model = joblib.load(model_path)


def predict(sample, metadata):
    probabilities = model.predict_proba([sample["x"]])[0]
    label = model.predict([sample["x"]])[0]
    return {"label": label, "probabilities": dict(zip(model.classes_, probabilities))}
"""


def test_a_predictor_answering_a_dict_keyed_by_numpy_classes(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    # dict(zip(model.classes_, ...)): scikit-learn's classes are numpy integers
    import joblib
    from sklearn.linear_model import LogisticRegression

    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: sk\n- kind: api\n  name: classes\n  predictor:\n"
        "    path: predictor.py\n    model: model.joblib\n",
        {"predictor.py": PROBABILITIES},
    )
    features = np.array([[0.0, 0.0], [0.1, 0.2], [5.0, 5.0], [5.2, 4.9], [9.0, 0.0], [9.1, 0.3]])
    joblib.dump(LogisticRegression().fit(features, np.array([3, 3, 7, 7, 9, 9])), project / "model.joblib")
    answer = serve(project).post("/sk/classes", {"x": [5.1, 5.0]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["label"] == 7
    assert sorted(body["probabilities"]) == ["3", "7", "9"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


V09_CONFIG = """# Cortex v0.9's flat api form, three weeks before v0.10
- kind: deployment
  name: iris

- kind: api
  name: onnx-flat
  model: models/iris.onnx
  request_handler: handlers/onnx.py
  tracker:
    model_type: classification

- kind: api
  name: tf-flat
  model: models/tf
  model_format: tensorflow
  tf_signature_key: predict
  request_handler: handlers/tf.py
"""
V09_ONNX = """labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def pre_inference(sample, metadata):  # v0.9: metadata is the model's signature
    return {metadata[0].name: [sample["sepal_length"], sample["sepal_width"],
                               sample["petal_length"], sample["petal_width"]]}


def post_inference(prediction, metadata):
    return labels[prediction[0][0]] + " from " + metadata[0].name
"""
V09_TF = """labels = ["setosa", "versicolor", "virginica"]


def post_inference(prediction, metadata):
    outputs = sorted(metadata["predict"]["outputs"])
    return {"label": labels[int(prediction["class_ids"][0])], "outputs": outputs}
"""


@pytest.mark.tensorflow
def test_cortex_v09_flat_apis_and_two_argument_handlers(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        V09_CONFIG,
        {"handlers/onnx.py": V09_ONNX, "handlers/tf.py": V09_TF},
        {
            "models/iris.onnx": iris_onnx_model,
            "models/tf/1": example("iris-tensorflow") / "models" / "iris" / "1",
        },
    )
    assert (
        "is valid"
        in subprocess.run(
            [str(Path(sys.executable).parent / "inferd"), "validate", str(project)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    server = serve(project)
    assert server.post("/iris/onnx-flat", SAMPLE).json() == "iris-setosa from output_label"
    answer = server.post("/iris/tf-flat", SAMPLE).json()
    assert answer == {"label": "setosa", "outputs": ["class_ids", "classes", "logits", "probabilities"]}
