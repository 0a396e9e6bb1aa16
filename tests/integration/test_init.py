"""`inferd init` projects pass `inferd validate`, `inferd test` and serve at once, each flavour."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli
from tests.conftest import Server, example, save_two_signatures

Serve = Callable[..., Server]
VIRGINICA = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1}


def init(target: Path, *args: str) -> Path:
    result = CliRunner().invoke(cli, ["init", str(target), *args])
    assert result.exit_code == 0, result.output
    # quoted as a shell reads it: a TMPDIR with a space puts one in every tmp_path
    assert f"inferd serve {shlex.quote(str(target))} --reload" in result.output
    validated = CliRunner().invoke(cli, ["validate", str(target)])
    assert validated.exit_code == 0, validated.output
    return target


def check_starter(serve: Serve, project: Path) -> None:
    tested = CliRunner().invoke(cli, ["test", str(project)])
    assert tested.exit_code == 0, tested.output
    assert 'classifier  sample.json: "setosa"  (matches expected.json)' in tested.output
    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True,
        text=True,
        cwd=project,
    )
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    # where pytest is not installed (inferd does not install it): `python my-api/test_….py`
    (test_file,) = project.glob("test_*.py")
    plain = subprocess.run(
        [sys.executable, f"{project.name}/{test_file.name}"],
        capture_output=True,
        text=True,
        cwd=project.parent,
    )
    assert (plain.returncode, plain.stdout) == (0, "2 passed\n"), plain.stderr
    server = serve(project)
    sample = json.loads((project / "sample.json").read_text())
    assert server.post(f"/{project.name}/classifier", sample).json() == "setosa"
    assert server.post(f"/{project.name}/classifier", VIRGINICA).json() == "virginica"


def test_an_onnx_project_serves_its_starter_model(serve: Serve, tmp_path: Path) -> None:
    check_starter(serve, init(tmp_path / "shop"))


def test_a_predictor_project_serves_its_starter_model(serve: Serve, tmp_path: Path) -> None:
    check_starter(serve, init(tmp_path / "shop", "--predictor"))


@pytest.mark.tensorflow
def test_a_tensorflow_project_serves_its_starter_model(serve: Serve, tmp_path: Path) -> None:
    # As a user runs them: TensorFlow's slow import is announced, and its C++ start-up notes
    # (CPU features, absl, oneDNN) stay off the terminal, in `init` and in `test`. Nothing is
    # left in the user's temporary folder (AutoGraph's bytecode was, where Python writes
    # bytecode: as it does unless PYTHONDONTWRITEBYTECODE is set).
    project, scratch = tmp_path / "shop", tmp_path / "tmp"
    scratch.mkdir()
    written = subprocess.run(
        [sys.executable, "-m", "inferd", "init", str(project), "--tensorflow"],
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "TMPDIR": str(scratch),
        },
    )
    assert written.returncode == 0, written.stdout + written.stderr
    assert written.stdout.startswith("building the starter TensorFlow model (importing TensorFlow takes")
    assert written.stderr == ""
    assert list(scratch.rglob("*")) == []
    tested = subprocess.run(
        [sys.executable, "-m", "inferd", "test", str(project)], capture_output=True, text=True
    )
    assert (tested.returncode, tested.stderr) == (0, ""), tested.stdout + tested.stderr
    assert CliRunner().invoke(cli, ["validate", str(project)]).exit_code == 0
    check_starter(serve, project)


def test_a_project_around_the_user_s_onnx_model(serve: Serve, tmp_path: Path, iris_onnx_model: Path) -> None:
    project = init(tmp_path / "mine", "--model", str(iris_onnx_model))
    assert (project / "models" / "iris.onnx").read_bytes() == iris_onnx_model.read_bytes()
    assert json.loads((project / "sample.json").read_text()) == {"input": [[0.0, 0.0, 0.0, 0.0]]}
    tested = CliRunner().invoke(cli, ["test", str(project)])
    assert tested.exit_code == 0, tested.output
    server = serve(project)
    answer = server.post("/mine/iris", {"input": [VIRGINICA[k] for k in VIRGINICA]}).json()
    assert answer["output_label"] == [2]


@pytest.mark.tensorflow
def test_a_savedmodel_given_without_tensorflow_makes_a_tensorflow_project(tmp_path: Path) -> None:
    # was: "error: --model ...: an ONNX project needs a .onnx file (or a .zip holding one)", of a
    # SavedModel folder `inferd init` could tell from an ONNX file
    saved = example("iris-tensorflow") / "models" / "iris"
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "mine"), "--model", str(saved)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote a new tensorflow project in {tmp_path / 'mine'}:")
    tested = CliRunner().invoke(cli, ["test", str(tmp_path / "mine")])
    assert tested.exit_code == 0, tested.output
    # a file that is neither says which option each kind of model takes
    weights = tmp_path / "weights.joblib"
    weights.write_bytes(b"\0")
    refused = CliRunner().invoke(cli, ["init", str(tmp_path / "other"), "--model", str(weights)])
    assert refused.exit_code == 2
    assert refused.output == (
        f"error: --model {weights}: an ONNX project needs a .onnx file (or a .zip holding one); "
        "a SavedModel folder makes a TensorFlow project, and any other file needs --predictor\n"
    )


@pytest.mark.tensorflow
def test_a_savedmodel_of_several_signatures_none_the_default_gets_a_signature_key(tmp_path: Path) -> None:
    # was: "cannot load it: ... set tensorflow.signature_key to one of: area, double", of a
    # project that had no cortex.yaml yet to set it in
    save_two_signatures(tmp_path / "shapes")
    project = init(tmp_path / "mine", "--model", str(tmp_path / "shapes"))
    config = (project / "cortex.yaml").read_text()
    assert "    signature_key: area   # the SavedModel's signatures: area, double\n" in config
    assert json.loads((project / "sample.json").read_text()) == {"sizes": [[0.0, 0.0]]}
    tested = CliRunner().invoke(cli, ["test", str(project)])
    assert tested.exit_code == 0, tested.output


def test_a_predictor_project_around_the_user_s_file(serve: Serve, tmp_path: Path) -> None:
    model = tmp_path / "rules.txt"
    model.write_text("my rules")
    project = init(tmp_path / "mine", "--predictor", "--model", str(model))
    server = serve(project)
    assert server.post("/mine/rules", {"text": "hi"}).json() == {
        "model": "rules.txt",
        "sample": {"text": "hi"},
    }


def test_the_own_tests_of_two_projects_run_in_one_pytest_session(tmp_path: Path) -> None:
    # `pytest` at the top of a repository holding two inferd projects: each test module has a
    # name of its own (two `test_classifier.py` would clash as one module), and each project's
    # handlers are its own.
    projects = [init(tmp_path / "shop"), init(tmp_path / "garden", "--predictor")]
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, projects)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert session.returncode == 0, session.stdout + session.stderr
    assert "4 passed" in session.stdout
