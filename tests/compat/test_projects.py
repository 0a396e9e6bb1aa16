"""Cortex v0.10 project folders as 2019 wrote them, served by inferd: a requirements.txt naming
scikit-learn by its old PyPI name ``sklearn`` (which PyPI now refuses to install), a predictor
loading its model with ``from sklearn.externals import joblib`` (scikit-learn 0.21's way), an
image handler resizing with ``Image.ANTIALIAS`` (Pillow < 10), a whole model saved with
``torch.save(model)``, a one-row frame made with ``DataFrame.append`` (pandas < 2), a pin of a
pure-Python release that never had a wheel (``emoji==0.5.4``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from inferd.engine.packages import packages_dir
from tests.conftest import Server, make_project, serve

__all__ = ["serve"]

PREDICTOR = """import numpy as np
from sklearn.externals import joblib  # scikit-learn 0.21's way (removed in 0.23)

labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def init(model_path, metadata):
    global model
    model = joblib.load(model_path)


def predict(sample, metadata):
    row = np.array([[sample[name] for name in metadata["features"]]])
    return labels[int(model.predict(row)[0])]
"""
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_a_2019_sklearn_predictor(tmp_path: Path, serve: Callable[..., Server], inferd_home: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: iris\n- kind: api\n  name: classifier\n  predictor:\n"
        f"    path: predictor.py\n    model: model.joblib\n    metadata: {{features: {FEATURES}}}\n",
        {"predictor.py": PREDICTOR, "requirements.txt": "sklearn\njoblib\nnumpy\n"},
    )
    iris = load_iris()
    joblib.dump(LogisticRegression(max_iter=1000).fit(iris.data, iris.target), project / "model.joblib")
    server = serve(project)
    answer = server.post("/iris/classifier", dict(zip(FEATURES, [5.2, 3.6, 1.4, 0.3], strict=True)))
    assert answer.status_code == 200, answer.text
    assert answer.json() == "iris-setosa"
    assert "sklearn is read as scikit-learn" in server.log()
    # scikit-learn is inferd's own (the cortex extra): nothing was installed for the project
    environment = packages_dir(inferd_home, project / "requirements.txt")
    assert [path.name for path in environment.iterdir() if not path.name.startswith(".")] == []


IMAGE_HANDLER = """import base64
import io

import numpy as np
from PIL import Image


def pre_inference(sample, signature, metadata):
    image = Image.open(io.BytesIO(base64.b64decode(sample["base64"]))).convert("RGB")
    image = image.resize((8, 8), Image.ANTIALIAS)  # Pillow < 10's name for LANCZOS
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255
    return {signature[0].name: np.expand_dims(pixels, axis=0)}


def post_inference(prediction, signature, metadata):
    return {"brightness": round(float(prediction[0][0]), 3)}
"""


def build_brightness_model(path: Path) -> None:
    """An ONNX model: images float [N, 3, 8, 8] -> brightness [N] (the mean of each image)."""
    from onnx import TensorProto, helper, save_model

    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 3, 8, 8])
    brightness = helper.make_tensor_value_info("brightness", TensorProto.FLOAT, [None])
    node = helper.make_node("ReduceMean", ["images"], ["brightness"], axes=[1, 2, 3], keepdims=0)
    graph = helper.make_graph([node], "brightness", [images], [brightness])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save_model(model, str(path))


def test_a_base64_image_handler_with_antialias(tmp_path: Path, serve: Callable[..., Server]) -> None:
    import base64
    import io

    import numpy as np
    from PIL import Image

    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: image\n- kind: api\n  name: brightness\n  onnx:\n"
        "    model: brightness.onnx\n    request_handler: handler.py\n",
        {"handler.py": IMAGE_HANDLER, "requirements.txt": "pillow\n"},
    )
    build_brightness_model(project / "brightness.onnx")
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 24, 3), 51, np.uint8)).save(buffer, format="PNG")
    sample = {"base64": base64.b64encode(buffer.getvalue()).decode("ascii")}
    answer = serve(project).post("/image/brightness", sample)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"brightness": 0.2}


NET = """import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.layer(x)
"""
TORCH_PREDICTOR = """import torch

labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def init(model_path, metadata):
    global model
    model = torch.load(model_path)  # the whole model, saved with torch.save(model, path)
    model.eval()


def predict(sample, metadata):
    row = torch.tensor([[sample["sepal_length"], sample["sepal_width"],
                         sample["petal_length"], sample["petal_width"]]])
    return labels[int(torch.argmax(model(row)[0]))]
"""


def test_a_pytorch_predictor_loading_a_whole_saved_model(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    import importlib.util
    import sys

    import torch

    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: torch\n- kind: api\n  name: iris\n  predictor:\n"
        "    path: src/predictor.py\n    model: model.pt\n    python_path: src/\n",
        {"src/net.py": NET, "src/predictor.py": TORCH_PREDICTOR},
    )
    spec = importlib.util.spec_from_file_location("net", project / "src" / "net.py")
    assert spec is not None and spec.loader is not None
    net = importlib.util.module_from_spec(spec)
    sys.modules["net"] = net  # the pickle names the class as the replica imports it: net.Net
    try:
        spec.loader.exec_module(net)
        model = net.Net()
        with torch.no_grad():
            model.layer.weight.zero_()
            model.layer.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
        torch.save(model, project / "model.pt")
    finally:
        del sys.modules["net"]
    answer = serve(project).post(
        "/torch/iris", {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == "iris-virginica"


MPG_PREDICTOR = """import joblib
import pandas as pd

FEATURES = ["cylinders", "displacement", "horsepower", "weight", "acceleration"]


def init(model_path, metadata):
    global model
    model = joblib.load(model_path)


def predict(sample, metadata):
    # pandas 0.25's way to make a one-row frame (DataFrame.append: removed in pandas 2.0)
    frame = pd.DataFrame(columns=FEATURES).append(sample, ignore_index=True)
    for name, column in frame.iteritems():
        frame[name] = column.astype(float)
    return float(model.predict(frame.to_numpy())[0])
"""


def test_a_pandas_025_predictor(tmp_path: Path, serve: Callable[..., Server]) -> None:
    import joblib
    import numpy as np
    from sklearn.linear_model import LinearRegression

    features = ["cylinders", "displacement", "horsepower", "weight", "acceleration"]
    rows = np.array([[4, 100.0, 90, 2200, 15.0], [6, 200.0, 110, 3000, 14.0], [8, 350.0, 160, 4100, 11.5]])
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: auto\n- kind: api\n  name: mpg\n  predictor:\n"
        "    path: predictor.py\n    model: linreg.joblib\n  tracker:\n    model_type: regression\n",
        {"predictor.py": MPG_PREDICTOR},
    )
    model = LinearRegression().fit(rows, [30.0, 21.0, 14.0])
    joblib.dump(model, project / "linreg.joblib")
    answer = serve(project).post("/auto/mpg", dict(zip(features, rows[1].tolist(), strict=True)))
    assert answer.status_code == 200, answer.text
    assert answer.json() == pytest.approx(float(model.predict(rows[1:2])[0]))


SIBLING_HANDLER = """from features import ORDER  # handlers/features.py, beside this file
from labels import LABELS  # labels.py at the project's root


def pre_inference(sample, signature, metadata):
    return {signature[0].name: [[sample[name] for name in ORDER]]}


def post_inference(prediction, signature, metadata):
    return LABELS[int(prediction[0][0])]
"""


def test_a_handler_importing_its_neighbour(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: iris\n- kind: api\n  name: classifier\n  onnx:\n"
        "    model: models/iris.onnx\n    request_handler: handlers/iris.py\n",
        {
            "handlers/iris.py": SIBLING_HANDLER,
            "handlers/features.py": f"ORDER = {FEATURES}\n",
            "labels.py": "LABELS = ['iris-setosa', 'iris-versicolor', 'iris-virginica']\n",
        },
        {"models/iris.onnx": iris_onnx_model},
    )
    sample = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
    answer = serve(project).post("/iris/classifier", sample)
    assert answer.status_code == 200, answer.text
    assert answer.json() == "iris-setosa"


RELATIVE_HANDLER = """from .features import ORDER  # handlers/features.py, imported as in a package


def pre_inference(sample, signature, metadata):
    return {signature[0].name: [[sample[name] for name in ORDER]]}
"""
RELATIVE_PREDICTOR = """from . import labels  # app/labels.py
from .features import ORDER


def predict(sample, metadata):
    return [labels.LABELS[0], len(ORDER)]
"""


def test_relative_imports_in_a_handler_and_a_predictor_folder(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    # Cortex imported a handler by its path alone, so `from .features import ORDER` failed
    # ("no known parent package"); inferd imports it as part of its folder's package.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: iris\n- kind: api\n  name: classifier\n  onnx:\n"
        "    model: models/iris.onnx\n    request_handler: handlers/iris.py\n"
        "- kind: api\n  name: python\n  predictor:\n    path: app/predictor.py\n",
        {
            "handlers/iris.py": RELATIVE_HANDLER,  # a folder without __init__.py
            "handlers/features.py": f"ORDER = {FEATURES}\n",
            "app/__init__.py": "",
            "app/predictor.py": RELATIVE_PREDICTOR,
            "app/labels.py": "LABELS = ['iris-setosa', 'iris-versicolor', 'iris-virginica']\n",
            "app/features.py": f"ORDER = {FEATURES}\n",
        },
        {"models/iris.onnx": iris_onnx_model},
    )
    server = serve(project)
    sample = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
    answer = server.post("/iris/classifier", sample)
    assert answer.status_code == 200, answer.text
    assert answer.json()[0] == [0]
    answer = server.post("/iris/python", sample)
    assert answer.status_code == 200, answer.text
    assert answer.json() == ["iris-setosa", 4]


METADATA = """- kind: deployment
  name: meta
- kind: api
  name: echo
  predictor:
    path: predictor.py
    metadata:
      model_date: 2019-11-21
      refresh_at: 12:30:00
      threshold: 1e-3
      labels: [setosa, versicolor]
      upper: .inf
      lower: -.inf
      unknown: .nan
"""


REPR_PREDICTOR = "def predict(sample, metadata):\n    return {k: repr(v) for k, v in metadata.items()}\n"


def test_metadata_values_as_cortex_read_them(tmp_path: Path, serve: Callable[..., Server]) -> None:
    # go-yaml left dates and times as their text; PyYAML alone gives a date and 45000. YAML's
    # infinities and NaN reach the handler as floats (they were None: the spec sent to a
    # replica was written as JSON, which has no infinity)
    project = make_project(
        tmp_path / "p",
        METADATA,
        {"predictor.py": REPR_PREDICTOR},
    )
    answer = serve(project).post("/meta/echo", {})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model_date": "'2019-11-21'",
        "refresh_at": "'12:30:00'",
        "threshold": "0.001",
        "labels": "['setosa', 'versicolor']",
        "upper": "inf",
        "lower": "-inf",
        "unknown": "nan",
    }


def test_a_changed_infinite_metadata_value_is_a_new_version(tmp_path: Path) -> None:
    # JSON writes .inf, -.inf and .nan alike as null: a redeploy from .inf to -.inf said
    # "deployment is up-to-date" and the handler kept reading inf
    from inferd.config.load import load_project
    from inferd.engine.ray import plan
    from inferd.engine.state import version_id

    ids = set()
    for value in (".inf", "-.inf", ".nan", "1.0"):
        root = make_project(
            tmp_path / value, METADATA + f"      bound: {value}\n", {"predictor.py": REPR_PREDICTOR}
        )
        (config,) = load_project(root).apis
        ids.add((version_id(config, "files"), plan.version_id(config, "files", "code")))
    assert len({local for local, _ in ids}) == 4
    assert len({ray for _, ray in ids}) == 4


def test_an_s3_model_read_without_aws_credentials(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cortex's examples read s3://cortex-examples/..., a public bucket: with no AWS credentials
    # on this machine the model is read anonymously (it was 'Unable to locate credentials').
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.integration.conftest import free_port

    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        keys = {"aws_access_key_id": "uploader", "aws_secret_access_key": "uploader"}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)
        client.create_bucket(Bucket="cortex-examples", ACL="public-read")  # as Cortex's was
        client.upload_file(
            str(iris_onnx_model),
            "cortex-examples",
            "onnx/iris-classifier/iris.onnx",
            ExtraArgs={"ACL": "public-read"},
        )
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        project = make_project(
            tmp_path / "p",
            "- kind: deployment\n  name: iris\n- kind: api\n  name: classifier\n  onnx:\n"
            "    model: s3://cortex-examples/onnx/iris-classifier/iris.onnx\n",
        )
        answer = serve(project).post("/iris/classifier", [[5.2, 3.6, 1.4, 0.3]])
        assert answer.status_code == 200, answer.text
        assert answer.json()[0] == [0]
    finally:
        s3.stop()


EMOJI_PREDICTOR = """import emoji


def predict(sample, metadata):
    return emoji.emojize(sample["text"], use_aliases=True)  # emoji < 1.0's keyword
"""


def test_a_pin_with_only_its_source_on_pypi(
    tmp_path: Path, serve: Callable[..., Server], inferd_home: Path
) -> None:
    # emoji 0.5.4 (2019) is a source release only: pip builds it on Python 3.11 as it did on
    # Cortex's 3.6 (it was refused: 'cannot be installed on Python 3.11').
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: chat\n- kind: api\n  name: emoji\n  predictor:\n"
        "    path: predictor.py\n",
        {"predictor.py": EMOJI_PREDICTOR, "requirements.txt": "emoji==0.5.4\n"},
    )
    answer = serve(project).post("/chat/emoji", {"text": "ship it :thumbsup:"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == "ship it \N{THUMBS UP SIGN}"
    environment = packages_dir(inferd_home, project / "requirements.txt")
    assert (environment / "emoji-0.5.4.dist-info").is_dir()
