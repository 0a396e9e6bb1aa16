"""The Python client's pure parts: pickling the user's functions, its arguments, the project it writes."""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import sys
import threading
from pathlib import Path

import pytest

from inferd.config.load import load_project
from inferd.environments import Environment, EnvironmentStore
from inferd.errors import ConfigError, DeployFailedError, UsageError
from inferd.handler.loader import load_user_code
from inferd.handler.pickling import pickle_functions
from inferd.sdk import Client
from tests.conftest import example


def test_functions_of_the_users_own_module_travel_by_value(tmp_path: Path) -> None:
    (tmp_path / "my_handlers.py").write_text(
        "PREFIX = 'label-'\n"
        "def post_inference(prediction, signature, metadata):\n"
        "    return PREFIX + str(prediction)\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("my_handlers")
        data = pickle_functions({"post_inference": module.post_inference})
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_handlers", None)
    # Where the replica runs, that module cannot be imported: the function came by value.
    functions = pickle.loads(data)
    assert functions["post_inference"](7, None, None) == "label-7"


def test_a_notebooks_function_takes_the_notebooks_own_modules_along(tmp_path: Path) -> None:
    """A function defined in a notebook (``__main__``) that uses the notebook folder's own
    ``utils.py`` (``import utils``, ``from helpers import double``, and what those import from
    their neighbours): the replica, which cannot import them, got them by reference and failed
    with "No module named 'utils'" (found with a real Jupyter kernel). README: those defined in
    your own modules (or a script, a notebook) travel by value."""
    (tmp_path / "nb_utils.py").write_text("import nb_labels\ndef label(i):\n    return nb_labels.LABELS[i]\n")
    (tmp_path / "nb_labels.py").write_text("LABELS = ['setosa', 'versicolor', 'virginica']\n")
    (tmp_path / "nb_helpers.py").write_text("def double(x):\n    return 2 * x\n")
    cell: dict[str, object] = {"__name__": "__main__"}  # a notebook cell's namespace
    sys.path.insert(0, str(tmp_path))
    try:
        exec(
            "import nb_utils\n"
            "from nb_helpers import double\n"
            "def post_inference(prediction, signature, metadata):\n"
            "    return nb_utils.label(double(prediction))\n",
            cell,
        )
        data = pickle_functions({"post_inference": cell["post_inference"]})  # type: ignore[dict-item]
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("nb_utils", "nb_labels", "nb_helpers"):
            sys.modules.pop(name, None)
    assert pickle.loads(data)["post_inference"](1, None, None) == "virginica"


def test_a_neighbour_that_cannot_be_pickled_stays_by_reference(tmp_path: Path) -> None:
    """A neighbour module holding a lock (or a connection) cannot travel by value: it goes by
    reference, as before, for replicas that import it (their PYTHONPATH), not a UsageError."""
    (tmp_path / "nb_locked.py").write_text(
        "import threading\nLOCK = threading.Lock()\ndef one():\n    return 1\n"
    )
    cell: dict[str, object] = {"__name__": "__main__"}
    sys.path.insert(0, str(tmp_path))
    try:
        exec("import nb_locked\ndef predict(sample, metadata):\n    return nb_locked.one()\n", cell)
        data = pickle_functions({"predict": cell["predict"]})  # type: ignore[dict-item]
        assert pickle.loads(data)["predict"](None, None) == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("nb_locked", None)


def test_the_handler_loader_reads_the_pickle(tmp_path: Path) -> None:
    scale = 3
    path = tmp_path / "handlers.pickle"
    path.write_bytes(pickle_functions({"pre_inference": lambda sample, signature, metadata: sample * scale}))
    code = load_user_code(path, "handler", "test_sdk_pickle", "handlers.pickle")
    assert code.functions["pre_inference"](2, None, None) == 6


def test_the_project_it_writes_is_a_valid_cortex_project(tmp_path: Path) -> None:
    client = Client(home=tmp_path)
    model = example("iris-onnx") / "models" / "iris.onnx"
    client._write_project(
        "iris", "classifier", str(model), {"post_inference": lambda p, s, m: p}, "onnx", None
    )
    root = client._write_project("iris", "raw", str(model), {}, "onnx", None)
    project = load_project(root)
    assert project.deployment.name == "iris"
    assert [(api.name, api.api.handler_file) for api in project.apis] == [
        ("classifier", "classifier/handlers.pickle"),
        ("raw", None),
    ]
    assert json.loads((root / "raw" / "api.json").read_text())["onnx"]["model"] == "raw/iris.onnx"


def test_a_remote_model_path_is_named_in_the_project_not_copied(tmp_path: Path) -> None:
    """README: model_path may also be s3://, gs:// or http(s)://; model_format defaults to onnx
    for a .onnx file, else tensorflow."""
    from inferd.sdk import _model_format

    client = Client(home=tmp_path)
    uris = {"s3": "s3://bucket/iris.onnx", "gs": "gs://bucket/iris.onnx", "web": "https://host/iris.onnx"}
    for api, uri in uris.items():
        root = client._write_project("remote", api, uri, {}, _model_format(uri, None), None)
    assert {api.name: api.api.onnx.model for api in load_project(root).apis if api.api.onnx} == uris
    assert sorted(path.name for path in (root / "s3").iterdir()) == ["api.json"]  # nothing copied
    assert _model_format("s3://bucket/saved_model/", None) == "tensorflow"


def test_deploying_the_same_api_again_updates_it(tmp_path: Path) -> None:
    """README: another API of a deployment is added next to the earlier ones, the same name updated."""
    client = Client(home=tmp_path)
    model = str(example("iris-onnx") / "models" / "iris.onnx")
    client._write_project(
        "iris", "classifier", model, {"post_inference": lambda p, s, m: "old"}, "onnx", None
    )
    client._write_project("iris", "raw", model, {}, "onnx", None)
    root = client._write_project(
        "iris", "classifier", model, {"post_inference": lambda p, s, m: "new"}, "onnx", None
    )
    assert [api.name for api in load_project(root).apis] == ["classifier", "raw"]
    code = load_user_code(root / "classifier" / "handlers.pickle", "handler", "test_sdk_again", "x")
    assert code.functions["post_inference"](None, None, None) == "new"


def test_cortex_constructor_arguments(tmp_path: Path) -> None:
    EnvironmentStore(tmp_path).add(Environment(name="lab", provider="ray", address="ray://10.0.0.5:10001"))
    client = Client("AKIA...", "secret", "https://a1b2.elb.amazonaws.com", home=tmp_path)
    assert client.environment.is_local  # Cortex's cluster URL: this machine's operator
    assert Client(operator_url="lab", home=tmp_path).environment.name == "lab"
    assert Client(env="lab", home=tmp_path).environment.provider == "ray"
    with pytest.raises(UsageError, match="environment 'nowhere' does not exist"):
        Client(env="nowhere", home=tmp_path)


@pytest.mark.parametrize(("deployment", "api"), [("..", ".."), ("iris", "../.."), ("iris", ""), ("a/b", "x")])
def test_names_that_would_leave_the_workspace_are_refused(tmp_path: Path, deployment: str, api: str) -> None:
    # Was: Client().deploy("..", "..", ...) removed $INFERD_HOME's parent folder (the user's
    # home, with the default ~/.inferd) before anything was checked.
    home = tmp_path / "home"
    (home / "workspace").mkdir(parents=True)
    (tmp_path / "precious.txt").write_text("the user's")
    model = example("iris-onnx") / "models" / "iris.onnx"
    with pytest.raises(UsageError, match="must be lower-case"):
        Client(home=home)._write_project(deployment, api, str(model), {}, "onnx", None)
    assert (tmp_path / "precious.txt").read_text() == "the user's"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home", "precious.txt"]


def test_a_function_that_cannot_be_pickled_is_named_before_anything_is_deployed(tmp_path: Path) -> None:
    # Was: "TypeError: cannot pickle '_thread.lock' object" from cloudpickle's insides, after
    # the operator had been started, naming neither the function nor what to do.
    lock = threading.Lock()  # a notebook's session, connection or lock, caught by a closure
    client = Client(home=tmp_path)
    with pytest.raises(UsageError) as caught:
        client.deploy(
            "iris",
            "classifier",
            example("iris-onnx") / "models" / "iris.onnx",
            pre_inference=lambda sample, signature, metadata: sample,
            post_inference=lambda prediction, signature, metadata: (lock, prediction)[1],
        )
    assert str(caught.value).startswith(
        "post_inference cannot be sent to the replicas: TypeError: cannot pickle '_thread.lock' object"
    )
    assert not (tmp_path / "operator.json").exists()  # refused before the operator was started
    assert not (tmp_path / "workspace" / "iris").exists()


class Interrupted:
    """An operator whose deploy call the user interrupts (Ctrl-C, a notebook's stop)."""

    def apis(self) -> list[dict[str, str]]:
        return [{"deployment": "iris", "name": "classifier"}]

    def deploy(self, project: Path) -> dict[str, object]:
        raise KeyboardInterrupt


def test_an_interrupted_deploy_leaves_the_project_as_the_operator_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: only an Exception put the API's previous folder back; after Ctrl-C the project held
    # no such API (or half its folder), so the next deploy beside it removed the live API.
    client = Client(home=tmp_path)
    model = str(example("iris-onnx") / "models" / "iris.onnx")
    client._write_project(
        "iris", "classifier", model, {"post_inference": lambda p, s, m: "old"}, "onnx", None
    )
    monkeypatch.setattr("shutil.copy2", Interrupted.deploy)  # while the model is copied
    new = {"post_inference": lambda p, s, m: "new"}
    with pytest.raises(KeyboardInterrupt):
        client._write_and_deploy(Interrupted(), "iris", "classifier", model, new, "onnx", None)
    root = tmp_path / "workspace" / "iris"
    assert [api.name for api in load_project(root).apis] == ["classifier"]
    code = load_user_code(root / "classifier" / "handlers.pickle", "handler", "test_sdk_interrupted", "x")
    assert code.functions["post_inference"](None, None, None) == "old"


class TakenThenInterrupted(Interrupted):
    """An operator that took the project (its snapshot read it, as the admin API's deploy goes on
    whether or not the client still waits), then the user's Ctrl-C while the client waits."""

    def __init__(self, snapshot: Path) -> None:
        self.snapshot = snapshot

    def deploy(self, project: Path) -> dict[str, object]:
        shutil.copytree(project, self.snapshot)
        raise KeyboardInterrupt


def test_a_deploy_interrupted_once_the_operator_took_it_keeps_the_project_it_runs(tmp_path: Path) -> None:
    # Was: the API's previous folder was put back while the operator went on with the new one
    # (reading the folder as it was removed), so the next deploy of another API of the deployment
    # sent the previous version back: a silent rollback of the live API.
    client = Client(home=tmp_path / "home")
    model = str(example("iris-onnx") / "models" / "iris.onnx")
    client._write_project(
        "iris", "classifier", model, {"post_inference": lambda p, s, m: "old"}, "onnx", None
    )
    operator = TakenThenInterrupted(tmp_path / "snapshot")
    new = {"post_inference": lambda p, s, m: "new"}
    with pytest.raises(KeyboardInterrupt):
        client._write_and_deploy(operator, "iris", "classifier", model, new, "onnx", None)
    root = tmp_path / "home" / "workspace" / "iris"
    for folder in (root, operator.snapshot):
        pickled = folder / "classifier" / "handlers.pickle"
        code = load_user_code(pickled, "handler", f"test_sdk_taken_{folder.name}", "x")
        assert code.functions["post_inference"](None, None, None) == "new", folder


class Refusing(Interrupted):
    """An operator that refuses the project the client wrote."""

    def deploy(self, project: Path) -> dict[str, object]:
        raise ConfigError(
            "cortex.yaml:32: api 'saved': tensorflow.model: saved/iris.onnx must be a SavedModel folder"
        )


def test_a_refused_deploy_says_why_without_the_config_the_user_never_wrote(tmp_path: Path) -> None:
    # Was: "... was not deployed: cortex.yaml:32: api 'saved': ...", a line of the client's own
    # cortex.yaml, and the ConfigError chained to it: a notebook showed the operator client's
    # traceback above the user's.
    client = Client(home=tmp_path)
    model = str(example("iris-onnx") / "models" / "iris.onnx")
    with pytest.raises(DeployFailedError) as caught:
        client._write_and_deploy(Refusing(), "iris", "saved", model, {}, "tensorflow", None)
    assert str(caught.value) == (
        "api 'iris/saved' was not deployed: tensorflow.model: saved/iris.onnx must be a SavedModel folder"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_home_that_cannot_be_written_is_named_with_the_fix(tmp_path: Path) -> None:
    # Was: FileExistsError: [Errno 17] File exists: '/tmp/home' from the operator client's
    # insides, where `inferd deploy` says what the CLI's error says.
    home = tmp_path / "home"
    home.write_text("not a folder")
    with pytest.raises(UsageError) as caught:
        Client(home=home).deploy("iris", "classifier", example("iris-onnx") / "models" / "iris.onnx")
    assert str(caught.value) == (
        f"INFERD_HOME {home} is not a folder (File exists): set INFERD_HOME to a folder you can write"
    )
