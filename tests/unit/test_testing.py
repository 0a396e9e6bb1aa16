"""`inferd.testing`: a project's API in this process, with the real model and handlers."""

from __future__ import annotations

import functools
import http.server
import importlib
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from inferd.errors import HandlerError, InputError, UsageError
from inferd.testing import differences, expected_for, load_api, user_traceback
from tests.conftest import example, make_project

VIRGINICA = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1}


def copy_example(name: str, target: Path) -> Path:
    return Path(shutil.copytree(example(name), target, ignore=shutil.ignore_patterns("__pycache__")))


def test_load_api_answers_as_the_endpoint_does() -> None:
    api = load_api(example("iris-onnx"))
    sample = json.loads((example("iris-onnx") / "sample.json").read_text())
    assert api.name == "classifier"
    assert api.predict(sample) == "iris-setosa"
    assert api.predict(VIRGINICA) == "iris-virginica"
    with pytest.raises(HandlerError, match=r"pre_inference in handlers/iris\.py failed: KeyError"):
        api.predict({"petal_width": 1.0})


def test_load_api_runs_a_python_predictor() -> None:
    assert load_api(example("iris-predictor"), "predictor").predict(VIRGINICA) == "virginica"


def test_raw_predictions_come_back_as_json(tmp_path: Path, iris_onnx_model: Path) -> None:
    project = make_project(
        tmp_path / "raw",
        "- kind: deployment\n  name: raw\n- kind: api\n  name: raw\n  onnx:\n    model: iris.onnx\n",
        models={"iris.onnx": iris_onnx_model},
    )
    labels, probabilities = load_api(project).predict([[6.9, 3.1, 5.4, 2.1]])
    assert labels == [2]
    assert set(probabilities[0]) == {"0", "1", "2"}
    with pytest.raises(InputError, match=r"expected shape \[-1, 4\]"):
        load_api(project).predict([[1, 2, 3]])


def test_a_pre_inference_that_yields_is_the_handler_s_error(tmp_path: Path, iris_onnx_model: Path) -> None:
    # Was: a 400 "expected float32 values ... (as returned by pre_inference)", as if the
    # client's sample were wrong; the handler is (a 500 that says what to do).
    project = make_project(
        tmp_path / "gen",
        "- kind: deployment\n  name: g\n- kind: api\n  name: g\n  onnx:\n    model: iris.onnx\n"
        "    request_handler: h.py\n",
        files={"h.py": "def pre_inference(sample, signature, metadata):\n    yield sample\n"},
        models={"iris.onnx": iris_onnx_model},
    )
    with pytest.raises(HandlerError, match=r"pre_inference in h\.py returned an iterator"):
        load_api(project).predict([[6.9, 3.1, 5.4, 2.1]])


def test_a_handler_exception_keeps_the_user_s_traceback(tmp_path: Path) -> None:
    project = copy_example("iris-onnx", tmp_path / "iris")
    handler = project / "handlers" / "iris.py"
    handler.write_text(
        handler.read_text().replace("labels[predicted_class_id]", "labels[predicted_class_id + 7]")
    )
    api = load_api(project)
    with pytest.raises(
        HandlerError, match=r"post_inference in handlers/iris.py failed: IndexError"
    ) as caught:
        api.predict(VIRGINICA)
    shown = user_traceback(caught.value)
    assert f'File "{handler}", line 20, in post_inference' in shown
    assert "labels[predicted_class_id + 7]" in shown
    assert "inferd/handler" not in shown


def test_a_project_with_several_apis_needs_the_api_named(tmp_path: Path, iris_onnx_model: Path) -> None:
    project = make_project(
        tmp_path / "two",
        "- kind: deployment\n  name: two\n"
        "- kind: api\n  name: a\n  onnx:\n    model: iris.onnx\n"
        "- kind: api\n  name: b\n  onnx:\n    model: iris.onnx\n",
        models={"iris.onnx": iris_onnx_model},
    )
    with pytest.raises(UsageError, match=r"several APIs \(a, b\)"):
        load_api(project)
    with pytest.raises(UsageError, match=r"no API 'c' \(it has: a, b\)"):
        load_api(project, "c")
    assert load_api(project, "b").predict([[6.9, 3.1, 5.4, 2.1]])[0] == [2]


def test_numbers_match_within_the_tolerance() -> None:
    assert differences({"p": [0.5, 1]}, {"p": [0.5000001, 1.0]}, 1e-6) == []
    assert differences({"p": [0.5, 1]}, {"p": [0.6, 1]}, 1e-6) == ['["p"][0]: got 0.5, expected 0.6']
    assert differences(0.5, 0.6, 0.2) == []


def test_other_values_must_be_equal() -> None:
    assert differences("iris-setosa", "iris-virginica") == [
        'the answer: got "iris-setosa", expected "iris-virginica"'
    ]
    assert differences([1, 2], [1, 2, 3]) == ["the answer: got 2 items, expected 3"]
    assert differences({"a": 1, "b": 2}, {"a": 1, "c": 2}) == ['["c"]: missing', '["b"]: not expected']
    assert differences(True, 1) == ["the answer: got true, expected 1"]
    assert differences([{"x": "y"}], [{"x": "y"}]) == []


def test_expected_files_pair_with_samples(tmp_path: Path) -> None:
    for name in ("sample.json", "expected.json", "sample-2.json", "sample-3.json", "expected-3.json"):
        (tmp_path / name).write_text("1")
    assert expected_for(tmp_path / "sample.json") == tmp_path / "expected.json"
    assert expected_for(tmp_path / "sample-2.json") is None
    assert expected_for(tmp_path / "sample-3.json") == tmp_path / "expected-3.json"


def test_a_gpu_api_is_tested_where_the_model_can_run(tmp_path: Path, iris_onnx_model: Path) -> None:
    project = make_project(
        tmp_path / "gpu",
        "- kind: deployment\n  name: gpu\n- kind: api\n  name: raw\n  onnx:\n    model: iris.onnx\n"
        "  compute:\n    gpu: 1\n",
        models={"iris.onnx": iris_onnx_model},
    )
    api = load_api(project)  # a replica of it would refuse a GPU it cannot use; inferd test runs
    assert api.predictor.runtime is not None
    assert api.predictor.runtime.device in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert api.predict([[5.2, 3.6, 1.4, 0.3]])[0] == [0]


def test_a_streamed_answer_is_its_items() -> None:
    api = load_api(example("text-generator"))
    words = api.predict({"prompt": "Beautiful", "max_tokens": 5, "seed": 7})
    assert len(words) == 5 and all(isinstance(word, str) and word for word in words)
    with pytest.raises(HandlerError, match=r"predict failed while streaming: ValueError"):
        api.predict({"max_tokens": "many"})


NUMPY_PREDICTOR = """\
import numpy as np


def predict(sample, metadata):
    value = [np.float32(0.3), np.array([0.3], dtype=np.float32)]
    return iter(value) if sample.get("stream") else value
"""


def test_numpy_values_come_back_as_the_endpoint_answers_them(tmp_path: Path) -> None:
    # The endpoint answers a float32 as the float64 it is (README, "What post_inference or
    # predict returns"): streamed items and load_api alike.
    project = make_project(
        tmp_path / "numbers",
        "- kind: deployment\n  name: n\n- kind: api\n  name: n\n  predictor:\n    path: numbers.py\n",
        files={"numbers.py": NUMPY_PREDICTOR},
    )
    api = load_api(project)
    assert api.predict({}) == [0.30000001192092896, [0.30000001192092896]]
    assert api.predict({"stream": True}) == [0.30000001192092896, [0.30000001192092896]]


def test_an_integer_past_64_bits_keeps_its_digits_as_the_endpoint_sends_them(tmp_path: Path) -> None:
    # Was: load_api read the answer back with orjson, which made 2**70 a float (1.18e+21).
    project = make_project(
        tmp_path / "big",
        "- kind: deployment\n  name: b\n- kind: api\n  name: b\n  predictor:\n    path: big.py\n",
        files={
            "big.py": "def predict(sample, metadata):\n    return {'n': 2**70, 'items': [2**64, -(2**65)]}\n"
        },
    )
    assert load_api(project).predict({}) == {"n": 2**70, "items": [2**64, -(2**65)]}


def test_a_stream_from_an_api_with_batching_fails_as_the_endpoint_does(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "batched",
        "- kind: deployment\n  name: b\n- kind: api\n  name: b\n  predictor:\n    path: numbers.py\n"
        "  batching: {max_batch_size: 4}\n",
        files={"numbers.py": NUMPY_PREDICTOR},
    )
    with pytest.raises(HandlerError, match=r"an iterator streams only without batching"):
        load_api(project).predict({"stream": True})


HELPED = """\
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import features

LABEL = Path("label.txt").read_text().strip()  # by relative path: the project folder is the cwd


def predict(sample, metadata):
    return [features.VALUE, LABEL, Path("label.txt").read_text().strip()]
"""


def test_projects_keep_their_own_neighbours_and_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two projects whose handlers import a neighbour of the same name, loaded from elsewhere
    # (``pytest my-api`` runs in the parent folder), as a replica of each would run them.
    apis = []
    for name in ("first", "second"):
        project = make_project(
            tmp_path / name,
            f"- kind: deployment\n  name: {name}\n- kind: api\n  name: api\n"
            "  predictor:\n    path: serving/helped.py\n",
            files={
                "serving/helped.py": HELPED,
                "serving/features.py": f"VALUE = {name!r}\n",  # found in the handler's own folder
                "label.txt": f"{name} label\n",
            },
        )
        apis.append(load_api(project))
    monkeypatch.chdir(tmp_path)
    assert [api.predict({}) for api in apis] == [
        ["first", "first label", "first label"],
        ["second", "second label", "second label"],
    ]
    assert Path.cwd() == tmp_path


def test_a_project_under_the_home_folder_is_found_by_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: load_api("~/iris") looked for a folder named "~" in the working directory.
    monkeypatch.setenv("HOME", str(tmp_path))
    copy_example("iris-onnx", tmp_path / "iris")
    assert load_api("~/iris").predict(VIRGINICA) == "iris-virginica"


INTERRUPTED = """\
import os

if os.environ.get("INTERRUPT_IMPORT"):
    raise KeyboardInterrupt  # Ctrl-C (a notebook's interrupt) while the handler imports


def predict(sample, metadata):
    if sample == "interrupt":
        raise KeyboardInterrupt  # Ctrl-C while it computes
    if sample == "stream":
        return words()
    return "answered"


def words():
    yield "first"
    raise KeyboardInterrupt  # Ctrl-C while it streams
"""


def test_interrupting_a_load_or_a_prediction_stops_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: a replica turns a KeyboardInterrupt of user code into the request's 500 and serves
    # on, and so did load_api in the user's own process: interrupting a notebook cell raised
    # HandlerError (or LoadError), which a loop over samples catching it carried on past.
    project = make_project(
        tmp_path / "slow",
        "- kind: deployment\n  name: s\n- kind: api\n  name: s\n  predictor:\n    path: slow.py\n",
        files={"slow.py": INTERRUPTED},
    )
    api = load_api(project)
    for sample in ("interrupt", "stream"):
        with pytest.raises(KeyboardInterrupt):
            api.predict(sample)
    assert api.predict("again") == "answered"  # and the API answers on
    monkeypatch.setenv("INTERRUPT_IMPORT", "1")
    with pytest.raises(KeyboardInterrupt):
        load_api(project)


def test_a_failing_handler_prints_no_second_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: with logging not configured (a notebook, a script), the replica's log line of the
    # failure went to Python's last-resort handler: the traceback printed on stderr beside the
    # HandlerError that already carries it.
    printed: list[logging.LogRecord] = []
    monkeypatch.setattr(logging, "lastResort", CallbackHandler(printed.append))
    monkeypatch.setattr(logging.root, "handlers", [])  # nothing configured (pytest's own aside)
    api = load_api(copy_example("iris-onnx", tmp_path / "iris"))
    with pytest.raises(HandlerError, match="KeyError"):
        api.predict({"petal_width": 1.0})
    assert printed == []


class CallbackHandler(logging.Handler):
    def __init__(self, callback: Callable[[logging.LogRecord], None]) -> None:
        super().__init__()
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self.callback(record)


TOGETHER = """\
import threading

MET = threading.Barrier(2, timeout=0.5)


def predict(sample, metadata):
    try:
        MET.wait()  # a second prediction running beside this one meets it here
    except threading.BrokenBarrierError:
        return "alone"
    return "together"
"""


def test_predictions_from_threads_run_one_at_a_time_and_keep_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: two threads' predict (a notebook's ThreadPoolExecutor over samples) ran the handler
    # at once, which no replica does (README: globals in a handler are safe), and each restored
    # the working directory it found: the second one found the project's, which stayed the
    # process's working directory after both returned.
    project = make_project(
        tmp_path / "together",
        "- kind: deployment\n  name: t\n- kind: api\n  name: t\n  predictor:\n    path: together.py\n",
        files={"together.py": TOGETHER},
    )
    monkeypatch.chdir(tmp_path)
    api = load_api(project)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(api.predict, [{}, {}]))
    assert answers == ["alone", "alone"]
    assert Path.cwd() == tmp_path


def test_the_project_imports_its_own_neighbour_where_the_caller_has_one_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: a notebook that had imported its own `shared_helpers.py` loaded a project whose
    # predictor imports its neighbour `shared_helpers.py`, and the predictor got the notebook's
    # (already in sys.modules), which no replica of the project would.
    notebook = tmp_path / "notebook"
    notebook.mkdir()
    (notebook / "shared_helpers.py").write_text("VALUE = 'notebook'\n")
    monkeypatch.syspath_prepend(str(notebook))
    monkeypatch.delitem(sys.modules, "shared_helpers", raising=False)
    mine = importlib.import_module("shared_helpers")
    monkeypatch.setitem(sys.modules, "shared_helpers", mine)  # removed again after the test
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: p\n- kind: api\n  name: p\n  predictor:\n    path: predictor.py\n",
        files={
            "predictor.py": "import shared_helpers\n\n\n"
            "def predict(sample, metadata):\n    return shared_helpers.VALUE\n",
            "shared_helpers.py": "VALUE = 'project'\n",
        },
    )
    assert load_api(project).predict({}) == "project"
    assert sys.modules["shared_helpers"] is mine  # the caller keeps theirs
    assert load_api(project).predict({}) == "project"  # loaded again


def test_a_neighbour_edited_within_the_second_is_loaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: load_api imported the handler's neighbours through Python's bytecode cache, which
    # takes a source of the same size and the same mtime in whole seconds for unchanged: a
    # notebook that wrote `features.py` again and loaded the API kept the old module.
    monkeypatch.setattr("sys.dont_write_bytecode", False)  # as for a user without PYTHONDONTWRITEBYTECODE
    project = make_project(
        tmp_path / "edited",
        "- kind: deployment\n  name: e\n- kind: api\n  name: e\n  predictor:\n    path: predictor.py\n",
        files={
            "predictor.py": "from features import VALUE\n\n\ndef predict(sample, metadata):\n"
            "    return VALUE\n",
            "features.py": "VALUE = 'old'\n",
        },
    )
    assert load_api(project).predict({}) == "old"
    features = project / "features.py"
    stat = features.stat()
    features.write_text("VALUE = 'new'\n")
    os.utime(features, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # saved within the same second
    assert load_api(project).predict({}) == "new"


@pytest.mark.parametrize("entry", ["absolute", "relative"])  # sys.path.append(".") in a notebook
@pytest.mark.parametrize("imported", [True, False])
def test_a_handler_in_a_subfolder_imports_its_own_neighbour_where_the_caller_has_one_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, imported: bool, entry: str
) -> None:
    # Was: the handler's own folder comes last on sys.path (as in a replica), after the caller's
    # folder (a notebook's, on sys.path): `serving/predictor.py`'s `import helpers_nearby` got
    # the notebook's `helpers_nearby.py`, imported or not, which no replica of the project has.
    # A name of each case's own: load_api forgets the last project's modules by name, so after a
    # case with imported=False it dropped this one's own module (the suite's order hid that).
    helpers = f"helpers_nearby_{entry}_{imported}".lower()
    notebook = tmp_path / "notebook"
    notebook.mkdir()
    (notebook / f"{helpers}.py").write_text("VALUE = 'notebook'\n")
    monkeypatch.chdir(notebook)
    monkeypatch.syspath_prepend(str(notebook) if entry == "absolute" else ".")
    monkeypatch.delitem(sys.modules, helpers, raising=False)
    if imported:
        mine = importlib.import_module(helpers)
        monkeypatch.setitem(sys.modules, helpers, mine)  # removed again after the test
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: p\n- kind: api\n  name: p\n  predictor:\n"
        "    path: serving/predictor.py\n",
        files={
            "serving/predictor.py": f"import {helpers}\n\n\n"
            f"def predict(sample, metadata):\n    return {helpers}.VALUE\n",
            f"serving/{helpers}.py": "VALUE = 'project'\n",
        },
    )
    assert load_api(project).predict({}) == "project"
    if imported:
        assert sys.modules[helpers] is mine  # the caller keeps theirs


def test_the_packages_of_a_test_go_into_a_home_of_the_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``inferd test`` of a project with a requirements.txt installs into $INFERD_HOME/envs: it
    # made the home and envs 0755 (every user's), and used a home every user may write, whose
    # writers could put the packages it then imports there.
    yaml = "- kind: deployment\n  name: t\n- kind: api\n  name: echo\n  predictor: {path: predictor.py}\n"
    files = {
        "predictor.py": "def predict(sample, metadata):\n    return sample\n",
        "requirements.txt": "numpy\n",
    }
    project = make_project(tmp_path / "project", yaml, files)
    home = tmp_path / "home"
    monkeypatch.setenv("INFERD_HOME", str(home))
    assert load_api(project).predict({"a": 1}) == {"a": 1}
    for folder in (home, home / "envs"):
        assert folder.stat().st_mode & 0o077 == 0, (folder, oct(folder.stat().st_mode))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("INFERD_HOME", str(shared))
    with pytest.raises(UsageError, match="may be written by every user"):
        load_api(project)
    assert list(shared.iterdir()) == []


def test_a_model_a_test_downloads_goes_into_a_home_of_the_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the model of an http(s):// or s3:// URI is downloaded into $INFERD_HOME/cache
    models = example("iris-onnx") / "models"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(models))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            uri = f"http://127.0.0.1:{server.server_address[1]}/iris.onnx"
            yaml = f"- kind: deployment\n  name: t\n- kind: api\n  name: raw\n  onnx: {{model: {uri}}}\n"
            project = make_project(tmp_path / "project", yaml, {})
            home = tmp_path / "home"
            monkeypatch.setenv("INFERD_HOME", str(home))
            assert load_api(project).predict([[6.9, 3.1, 5.4, 2.1]])
        finally:
            server.shutdown()
    assert any((home / "cache").iterdir())
    for folder in (home, home / "cache"):
        assert folder.stat().st_mode & 0o077 == 0, (folder, oct(folder.stat().st_mode))
