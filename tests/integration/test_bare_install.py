"""inferd installed without the extras its models need: `pip install inferd` alone installs
neither onnxruntime nor TensorFlow (pyproject.toml: the `onnx`, `tensorflow` and `all` extras),
nor Ray, which the README installs beside it for a Ray cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import example, make_project, wait_for

# What `pip install inferd` leaves out: the runtimes' packages and Ray, with their dist-info folders.
LEFT_OUT = {"onnxruntime", "onnx", "tensorflow", "tensorflow_cpu", "ray"}

YAML = """\
- kind: deployment
  name: bare
- kind: api
  name: classifier
  onnx:
    model: iris.onnx
- kind: api
  name: tf
  tensorflow:
    model: iris
"""


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment's Python holding inferd and its dependencies but no runtime: its
    site-packages links to every entry of this one's except those of ``LEFT_OUT``."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    ours, theirs = Path(sys.prefix, "lib", version, "site-packages"), venv / "lib" / version / "site-packages"
    for entry in ours.iterdir():
        if entry.name.split("-")[0].lower() not in LEFT_OUT:
            (theirs / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    missing = subprocess.run([str(python), "-c", "import onnxruntime"], capture_output=True, text=True)
    assert "No module named 'onnxruntime'" in missing.stderr
    return python


def sentences(python: Path) -> dict[str, str]:
    return {
        "classifier": f"ONNX models need onnxruntime, which is not installed in this Python ({python}): "
        "pip install 'inferd[onnx]'",
        "tf": f"TensorFlow SavedModels need tensorflow, which is not installed in this Python ({python}): "
        "pip install 'inferd[tensorflow]'",
    }


def test_a_model_whose_runtime_is_not_installed_is_one_sentence_naming_the_extra(
    bare_python: Path, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # Was: each replica logged `loading failed: ModuleNotFoundError: No module named
    # 'onnxruntime'` and a traceback through inferd's own modules, which named no way out.
    project = make_project(
        tmp_path / "p",
        YAML,
        {"sample.json": (example("iris-onnx") / "sample.json").read_text()},
        {"iris.onnx": iris_onnx_model, "iris": example("iris-tensorflow") / "models" / "iris"},
    )
    expected = sentences(bare_python)
    tested = subprocess.run(
        [str(bare_python), "-m", "inferd", "test", str(project)], capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 1
    for api, sentence in expected.items():
        assert f"{api}: cannot load: {sentence}\n" in tested.stdout + tested.stderr
    assert "Traceback" not in tested.stdout + tested.stderr

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        served = subprocess.Popen(
            [str(bare_python), "-m", "inferd", "serve", str(project), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        wait_for(lambda: log.read_text().count("failed to start") == 2, 120, "both APIs to fail")
    finally:
        served.terminate()
        served.wait(60)
    text = log.read_text()
    for api, sentence in expected.items():
        assert f"inferd: api '{api}' failed to start: {sentence}\n" in text, text
    assert "Traceback" not in text, text


def test_an_api_that_asks_for_a_gpu_is_told_the_gpu_extra(
    bare_python: Path, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # Was: told `pip install 'inferd[onnx]'` (or `[tensorflow]`), the CPU build, after which the
    # replica wanted `inferd[gpu]`, whose onnxruntime-gpu then shared one module with onnxruntime.
    on_gpu = YAML.replace("model: iris.onnx\n", "model: iris.onnx\n  compute:\n    gpu: 1\n").replace(
        "model: iris\n", "model: iris\n  compute:\n    gpu: 1\n"
    )
    project = make_project(
        tmp_path / "p",
        on_gpu,
        {"sample.json": (example("iris-onnx") / "sample.json").read_text()},
        {"iris.onnx": iris_onnx_model, "iris": example("iris-tensorflow") / "models" / "iris"},
    )
    tested = subprocess.run(
        [str(bare_python), "-m", "inferd", "test", str(project)], capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 1
    for api, sentence in sentences(bare_python).items():
        extra = sentence.rsplit("pip install ", 1)[1]
        told = sentence.replace(extra, "'inferd[gpu]' (the API asks for a GPU)")
        assert f"{api}: cannot load: {told}\n" in tested.stdout + tested.stderr


def test_inferd_init_without_the_runtime_names_the_extra_that_serves_the_project(
    bare_python: Path, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # Was: the starter said `pip install onnx`, after which `inferd serve` failed for want of
    # onnxruntime; `--model m.onnx` said `cannot load it: ModuleNotFoundError: No module named
    # 'onnxruntime'`.
    starter = subprocess.run(
        [str(bare_python), "-m", "inferd", "init", str(tmp_path / "starter")], capture_output=True, text=True
    )
    assert starter.returncode == 2
    assert "(pip install 'inferd[onnx]')" in starter.stderr and "Traceback" not in starter.stderr
    mine = subprocess.run(
        [str(bare_python), "-m", "inferd", "init", str(tmp_path / "mine"), "--model", str(iris_onnx_model)],
        capture_output=True,
        text=True,
    )
    assert mine.returncode == 2
    assert (
        mine.stderr
        == f"error: --model {iris_onnx_model}: cannot load it: {sentences(bare_python)['classifier']}\n"
    )
    assert not (tmp_path / "starter").exists() and not (tmp_path / "mine").exists()


def test_a_ray_environment_without_ray_installed_is_one_sentence(bare_python: Path, tmp_path: Path) -> None:
    # Was: `inferd deploy -e prod` (and `get`, `logs`, `delete -e`) printed a traceback ending in
    # `ModuleNotFoundError: No module named 'ray'` once something answered at the address.
    onnx_only = YAML.split("- kind: api\n  name: tf")[0]
    project = make_project(
        tmp_path / "p", onnx_only, {}, {"iris.onnx": example("iris-onnx") / "models" / "iris.onnx"}
    )
    env = dict(os.environ, INFERD_HOME=str(tmp_path / "home"))  # its own environments.json

    def inferd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bare_python), "-m", "inferd", *args], capture_output=True, text=True, env=env
        )

    with socket.create_server(("127.0.0.1", 0)) as head:  # a port that accepts, as a cluster's does
        address = f"ray://127.0.0.1:{head.getsockname()[1]}"
        assert inferd("env", "add", "prod", "--address", address).returncode == 0
        sentence = (
            f"error: the Ray cluster at {address} needs Ray in this Python too ({bare_python}): "
            "pip install 'ray[serve]' of the version the cluster runs (`ray --version` on its head node)\n"
        )
        for args in (("deploy", str(project)), ("get",)):
            done = inferd(*args, "-e", "prod")
            assert (done.returncode, done.stderr) == (1, sentence)
