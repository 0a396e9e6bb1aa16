"""What Cortex v0.10 projects relied on and inferd restores for them: NumPy's removed aliases,
what Python 3.6 had that 3.11 removed, handler files with neither hook, ONNX input objects with
extra keys, files at /mnt/project (read, written, imported)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Server, make_project, serve

__all__ = ["serve"]

PREDICTOR = """import numpy as np

def predict(sample, metadata):
    return {"scalar": np.asscalar(np.array([[sample["x"]]])), "float": np.float(sample["x"]),
            "int": np.int(sample["x"]), "object": np.object.__name__, "bool": np.bool(1)}
"""
CONFIG = "- kind: deployment\n  name: shim\n- kind: api\n  name: old\n  predictor:\n    path: predictor.py\n"


def test_numpy_aliases_for_cortex_yaml_projects_only(tmp_path: Path, serve: Callable[..., Server]) -> None:
    cortex = make_project(tmp_path / "cortex", CONFIG, {"predictor.py": PREDICTOR})
    answer = serve(cortex).post("/shim/old", {"x": 2.5})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"scalar": 2.5, "float": 2.5, "int": 2, "object": "object", "bool": True}

    plain = make_project(tmp_path / "inferd", "", {"predictor.py": PREDICTOR})
    (plain / "cortex.yaml").rename(plain / "inferd.yaml")
    (plain / "inferd.yaml").write_text(CONFIG)
    refused = serve(plain).post("/shim/old", {"x": 2.5})
    assert refused.status_code == 500
    assert "asscalar" in refused.json()["error"]


def test_handler_with_neither_hook_and_onnx_extra_keys(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: raw\n- kind: api\n  name: iris\n  onnx:\n    model: m.onnx\n"
        "    request_handler: handler.py\n",
        {"handler.py": "labels = ['setosa']  # Cortex accepted a handler file defining no hook\n"},
        {"m.onnx": iris_onnx_model},
    )
    server = serve(project)
    body = {"input": [[5.1, 3.5, 1.4, 0.2]], "request_id": "abc", "user": "x"}
    first = server.post("/raw/iris", body)
    assert first.status_code == 200, first.text
    assert server.post("/raw/iris", body).json() == first.json()
    log = server.log()
    assert log.count("ignoring keys that are not inputs of the ONNX model") == 1, log
    assert "request_id, user" in log


MOUNT_HANDLER = """import glob
import json
import os
import pathlib

import numpy as np

# Cortex's docs: "You can access config.json in handler.py like this"
with open("/mnt/project/config.json", "r") as config_file:
    config = json.load(config_file)
scale = np.load("/mnt/project/data/scale.npy")
labels = pathlib.Path("/mnt/project/data/labels.txt").read_text().split()
found = sorted(os.path.basename(p) for p in glob.glob("/mnt/project/data/*"))


def pre_inference(sample, signature, metadata):
    row = [sample[name] for name in config["features"]]
    return {signature[0].name: (np.array(row) * scale).tolist()}


def post_inference(prediction, signature, metadata):
    return {"label": labels[prediction[0][0]], "exists": os.path.exists("/mnt/project/config.json"),
            "found": found, "listed": sorted(os.listdir("/mnt/project/data"))}
"""


def test_handlers_read_project_files_at_mnt_project(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path
) -> None:
    import numpy as np

    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: files\n- kind: api\n  name: iris\n  onnx:\n    model: m.onnx\n"
        "    request_handler: handler.py\n",
        {
            "handler.py": MOUNT_HANDLER,
            "config.json": json.dumps({"features": features}),
            "data/labels.txt": "setosa versicolor virginica\n",
        },
        {"m.onnx": iris_onnx_model},
    )
    np.save(project / "data" / "scale.npy", np.ones(4))
    answer = serve(project).post("/files/iris", dict(zip(features, [5.1, 3.5, 1.4, 0.2], strict=True)))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "label": "setosa",
        "exists": True,
        "found": ["labels.txt", "scale.npy"],
        "listed": ["labels.txt", "scale.npy"],
    }


WRITING_PREDICTOR = """import os
import shutil
import sys

sys.path.append("/mnt/project/vendor")  # a folder of the project put on the path by hand
import tokenizer  # noqa: E402  (vendor/tokenizer.py)

cache = "/mnt/project/cache/models"


def init(model_path, metadata):
    # Cortex's /mnt/project was a writable folder: predictors kept downloads there
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, "part"), "w") as handle:
        handle.write(metadata["vocabulary"])
    os.replace(os.path.join(cache, "part"), os.path.join(cache, "vocab.txt"))
    shutil.copy(os.path.join(cache, "vocab.txt"), "/mnt/project/cache/copy.txt")
    os.remove("/mnt/project/cache/copy.txt")
    os.chdir("/mnt/project/cache")


def predict(sample, metadata):
    with open("models/vocab.txt") as handle:  # relative to the folder init changed into
        words = handle.read().split()
    return {"ids": tokenizer.ids(sample["text"], words), "left": sorted(os.listdir("/mnt/project/cache"))}
"""


TOKENIZER = "def ids(text, words):\n    return [words.index(w) for w in text.split()]\n"


def test_projects_write_and_import_under_mnt_project(tmp_path: Path, serve: Callable[..., Server]) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: files\n- kind: api\n  name: words\n  predictor:\n"
        "    path: predictor.py\n    metadata: {vocabulary: 'the cat sat'}\n",
        {
            "predictor.py": WRITING_PREDICTOR,
            "vendor/tokenizer.py": TOKENIZER,
        },
    )
    answer = serve(project).post("/files/words", {"text": "sat the cat"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ids": [2, 0, 1], "left": ["models"]}


NUMPY2_PREDICTOR = """import numpy as np

missing = np.NaN  # 2019 code: the spellings NumPy 2.0 removed


def predict(sample, metadata):
    row = np.asfarray(sample["row"])
    row[np.isnan(np.array(sample["row"], dtype=np.float_))] = 0.0
    return {"product": float(np.product(row)), "max": float(np.amax(np.append(row, -np.Inf))),
            "all": bool(np.alltrue(row >= 0)), "text": np.string_(b"ok").decode(),
            "missing": bool(np.isnan(missing)), "known": np.in1d([1.0, 7.0], row).tolist()}
"""


def test_numpy2_removed_names_for_cortex_yaml_projects(tmp_path: Path, serve: Callable[..., Server]) -> None:
    project = make_project(tmp_path / "p", CONFIG, {"predictor.py": NUMPY2_PREDICTOR})
    answer = serve(project).post("/shim/old", {"row": [1, 2, 3]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "product": 6.0,
        "max": 3.0,
        "all": True,
        "text": "ok",
        "missing": True,
        "known": [True, False],
    }


PYTHON36_PREDICTOR = """import base64
import collections
import inspect
import time


def predict(sample, metadata):
    started = time.clock()
    if not isinstance(sample, collections.Mapping):  # 2019 code: the ABCs on collections
        raise ValueError("expected an object")
    image = base64.decodestring(sample["image"].encode())
    spec = inspect.getargspec(predict)
    return {"bytes": len(image), "args": spec.args,
            "clock": time.clock() >= started}
"""


def test_python36_names_for_cortex_yaml_projects(tmp_path: Path, serve: Callable[..., Server]) -> None:
    # Cortex's images ran Python 3.6; these were removed in 3.8 to 3.11
    project = make_project(tmp_path / "p", CONFIG, {"predictor.py": PYTHON36_PREDICTOR})
    answer = serve(project).post("/shim/old", {"image": "iVBORw0KGgo="})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"bytes": 8, "args": ["sample", "metadata"], "clock": True}


SYSTEM_PREDICTOR = """import subprocess


def predict(sample, metadata):  # docs/dependencies/system-packages.md, as written
    return subprocess.run(["tree"], capture_output=True, text=True).stdout
"""


def test_system_packages_are_this_machine_s(
    tmp_path: Path, serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cortex's system packages came from a custom image (``FROM cortexlabs/predictor-serve``);
    here a program installed on the machine (on the PATH inferd runs with) is the predictor's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tree").write_text("#!/bin/sh\necho 'a tree of the folder'\n")
    (bin_dir / "tree").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: sys\n- kind: api\n  name: tree\n  predictor:\n    path: predictor.py\n",
        {"predictor.py": SYSTEM_PREDICTOR},
    )
    answer = serve(project).post("/sys/tree", {})
    assert answer.status_code == 200, answer.text
    assert answer.json() == "a tree of the folder\n"
