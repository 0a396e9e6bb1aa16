"""Behaviours of Cortex v0.10 that its code shows and its docs do not, found by a third pass
with projects written here: each test cites the Cortex file that shows the behaviour."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from inferd.cli.options import folder_deployment, project_folder
from inferd.cli.render import api_detail
from inferd.config.load import load_project
from inferd.config.quantity import parse_quantity
from inferd.engine.packages import packages_dir
from inferd.errors import ConfigError
from inferd.replica.tracking import tracked_value
from inferd.testing import load_api
from tests.conftest import Server, make_project, serve, wait_for

__all__ = ["serve"]

TRACKER_WITHOUT_MODEL_TYPE = """- kind: deployment
  name: shop

- kind: api
  name: price
  predictor:
    path: predictor.py
  tracker:
    key: price
"""


def test_a_tracker_without_model_type_tracks_a_regression(tmp_path: Path) -> None:
    # Cortex's validator let model_type be empty (apis.go: AllowEmpty), which parsed as
    # "unknown"; api_utils.py tracked every model type but classification as a regression,
    # and `cortex get` (get.go, predictionMetricsTable) showed its min | max | avg.
    project = make_project(
        tmp_path / "shop",
        TRACKER_WITHOUT_MODEL_TYPE,
        {"predictor.py": "def predict(sample, metadata):\n    return {'price': 2.5}\n"},
    )
    tracker = load_project(project).api("price").api.tracker
    assert tracker is not None
    assert tracker.model_type == "regression"
    assert tracked_value({"price": 2.5}, tracker) == 2.5


QUANTITIES = """- kind: deployment
  name: tiny

- kind: api
  name: echo
  predictor:
    path: predictor.py
  compute:
    cpu: 250000u
    mem: 268435456000m
"""


def test_compute_quantities_in_micro_and_nano_units(tmp_path: Path) -> None:
    # Cortex parsed cpu and mem with Kubernetes' resource.ParseQuantity (userconfig/quantity.go),
    # whose decimal suffixes are n, u, m, k, M, G, T, P and E: `kubectl top` prints cpu in n.
    project = make_project(
        tmp_path / "tiny", QUANTITIES, {"predictor.py": "def predict(sample, metadata):\n    return 1\n"}
    )
    compute = load_project(project).api("echo").api.compute
    assert parse_quantity(compute.cpu) == pytest.approx(0.25)
    assert parse_quantity("250000000n") == pytest.approx(0.25)
    assert parse_quantity(compute.mem) == pytest.approx(2**28)


def test_cli_commands_in_a_project_s_subfolder_mean_that_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cortex's CLI looked for cortex.yaml in the current folder, then in each folder above it
    # (cli/cmd/lib_config_reader.go, appRootOrBlank), so `cortex get`, `cortex logs classifier`
    # or `cortex delete` run in a project's src/ (the pytorch example's python_path) meant that
    # project's deployment.
    project = make_project(
        tmp_path / "shop",
        TRACKER_WITHOUT_MODEL_TYPE,
        {"src/predictor.py": "def predict(sample, metadata):\n    return 1\n"},
    )
    monkeypatch.chdir(project / "src")
    assert project_folder() == project
    assert folder_deployment() == "shop"
    monkeypatch.chdir(tmp_path)
    assert project_folder() is None
    assert folder_deployment() is None
    # A folder removed while a shell is in it names none (`inferd get` there said "error: No
    # such file or directory", where it listed the APIs)
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    assert project_folder() is None
    assert folder_deployment() is None


NO_HANDLER = """- kind: deployment
  name: iris

- kind: api
  name: classifier
  onnx:
    model: iris.onnx
"""


def test_requirements_txt_is_not_installed_for_an_api_without_python_code(
    tmp_path: Path, serve: Callable[..., Server], iris_onnx_model: Path, inferd_home: Path
) -> None:
    # The notebook's pins left beside cortex.yaml: Cortex never installed them for an ONNX or
    # TensorFlow API without a request_handler. Its operator downloaded the project only with a
    # handler (pkg/operator/workloads/api_workload.go:281 and :616), and run.sh pip-installed
    # /mnt/project/requirements.txt only if it was there.
    project = make_project(
        tmp_path / "iris",
        NO_HANDLER,
        {"requirements.txt": "tensorflow==1.14.0\nscikit-learn==0.21.3\n"},
        {"iris.onnx": iris_onnx_model},
    )
    server = serve(project)
    answer = server.post("/iris/classifier", {"input": [[5.2, 3.6, 1.4, 0.3]]})
    assert answer.status_code == 200, answer.text
    assert "requirements.txt" not in server.log()
    # `inferd test` (inferd.testing) loads it the same way
    assert load_api(project).predict([[5.2, 3.6, 1.4, 0.3]])[0] == [0]
    assert not packages_dir(inferd_home, project / "requirements.txt").exists()


def test_a_cortex_yaml_ending_with_a_document_marker(tmp_path: Path) -> None:
    # Cortex read cortex.yaml with go-yaml's Unmarshal (configreader/reader.go:889), which reads
    # the first document and no further: a file ending with `---` (a Kubernetes habit) deployed.
    text = TRACKER_WITHOUT_MODEL_TYPE + "---\n"
    project = make_project(
        tmp_path / "shop", text, {"predictor.py": "def predict(sample, metadata):\n    return 1\n"}
    )
    assert load_project(project).api("price").name == "price"
    # A second document that holds something is not silently dropped (Cortex dropped it).
    (project / "cortex.yaml").write_text(text + "- kind: api\n  name: other\n")
    with pytest.raises(ConfigError, match=r"cortex.yaml:11: .*second YAML document"):
        load_project(project)


@pytest.mark.parametrize(
    ("model_type", "header"), [("classification", ["class", "count"]), ("regression", ["min", "max", "avg"])]
)
def test_a_tracker_with_nothing_tracked_yet_shows_its_table_of_dashes(
    model_type: str, header: list[str]
) -> None:
    # Cortex's `cortex get API` printed the tracker's table for an API with a tracker before any
    # prediction was tracked, with `-` in each cell (cli/cmd/get.go:256-258, 351-353 and
    # 398-403): the tracker is set up, nothing counted yet.
    api = {
        "name": "price",
        "deployment": "shop",
        "status": "live",
        "up_to_date": 1,
        "available": 1,
        "requested": 1,
        "last_update": time.time(),
        "url": "http://127.0.0.1:8888/shop/price",
        "tracker": {"key": None, "model_type": model_type},
        "metrics": {"requests": {}, "latency": {}, "tracker": {}},
    }
    rows = [line.split() for line in api_detail(api).splitlines()]
    assert header in rows
    assert rows[rows.index(header) + 1] == ["-"] * len(header)
    del api["tracker"]
    assert header not in [line.split() for line in api_detail(api).splitlines()]


ECHO = """- kind: deployment
  name: gen

- kind: api
  name: echo
  predictor:
    path: predictor.py
"""


def test_a_post_without_a_body_or_json_content_type_is_a_null_sample(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    # Cortex's predict() read the body with Flask 1.1's request.get_json(), which is None for a
    # request that does not say Content-Type: application/json (predictor_serve/api.py:80), so
    # `curl -X POST URL` ran predict(None, metadata); an empty body said to be JSON was a 400.
    project = make_project(
        tmp_path / "gen",
        ECHO,
        {"predictor.py": "def predict(sample, metadata):\n    return {'got': sample}\n"},
    )
    server = serve(project)
    assert server.post("/gen/echo").json() == {"got": None}
    assert server.post("/gen/echo", data=b"", headers={"Content-Type": "text/plain"}).json() == {"got": None}
    empty_json = server.post("/gen/echo", data=b"", headers={"Content-Type": "application/json"})
    assert empty_json.status_code == 400 and "the request body is empty" in empty_json.text
    assert server.post("/gen/echo", {"a": 1}).json() == {"got": {"a": 1}}
    # said to be JSON as Flask's is_json read it: any application/...+json, parameters aside
    for kind in ("application/vnd.api+json", "Application/JSON; charset=utf-8"):
        said = server.post("/gen/echo", data=b"", headers={"Content-Type": kind})
        assert said.status_code == 400 and "the request body is empty" in said.text, kind


CORTEX_LOGGER = """from cortex.lib.log import cx_logger, debug_obj, get_logger
from cortex.lib.stringify import truncate

logger = get_logger()


def predict(sample, metadata):
    logger.info("sample was %s", sample)
    cx_logger().warning("cx_logger too")
    debug_obj("debugged", sample, True)
    assert truncate(list(range(12)), 10) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"
    return sample
"""


def test_handlers_logging_with_cortex_s_logger(tmp_path: Path, serve: Callable[..., Server]) -> None:
    # Handlers ran inside Cortex's image, where its runtime package was importable, and users
    # logged with it: `from cortex.lib.log import get_logger` (v0.9, v0.10.0) or `cx_logger`
    # (v0.10.1+), lib/log.py, writing `<time>:cortex:<LEVEL>:<message>` lines to stdout.
    project = make_project(tmp_path / "gen", ECHO, {"predictor.py": CORTEX_LOGGER})
    server = serve(project)
    assert server.post("/gen/echo", {"a": 1}).json() == {"a": 1}
    log = wait_for(lambda: server.log() if "debugged" in server.log() else None, 30, "the log lines")
    assert ":cortex:INFO:sample was {'a': 1}" in log
    assert ":cortex:WARNING:cx_logger too" in log
    # debug_obj wrote the value with lib/stringify.py's truncate: strings in double quotes
    assert ':cortex:INFO:debugged: {"a": 1}' in log


def test_cortex_predict_prints_sorted_keys_and_text_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    # `cortex predict` decoded the answer and printed it with Go's json.MarshalIndent(obj, "", "  ")
    # (cli/cmd/predict.go:103, pkg/lib/json/json.go:77): an object's keys sorted, text in UTF-8
    # as the model wrote it ("café", not "caf\u00e9").
    import requests

    from inferd.cli.predict import _print_answer

    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps({"text": "café “ok”", "label": "b", "scores": {"z": 1, "a": 2}}).encode()
    _print_answer("gen", response)
    assert capsys.readouterr().out == (
        '{\n  "label": "b",\n  "scores": {\n    "a": 2,\n    "z": 1\n  },\n  "text": "café “ok”"\n}\n'
    )
    response._content = json.dumps("é").encode()
    _print_answer("gen", response)
    assert capsys.readouterr().out == '"é"\n'


def test_onnx_signature_shapes_as_onnxruntime_named_their_dimensions() -> None:
    # Cortex's onnx_serve/api.py:226 answered `<endpoint>/signature` with NodeArg.shape as it was:
    # a dynamic dimension null, a named one its name ("batch"); TensorFlow's answer had -1
    # (tf_api/api.py:300).
    from inferd.protocols.cortex import cortex_field
    from inferd.runtimes.base import TensorSpec

    named = TensorSpec("x", np.dtype(np.float32), (None, None, 4), "tensor(float)", ("batch", None, None))
    onnx = {"model_format": "onnx"}
    assert cortex_field(named.describe(), onnx) == {"shape": ["batch", None, 4], "type": "float32"}
    anyrank = TensorSpec("t", np.dtype(object), None, "tensor(string)")
    assert cortex_field(anyrank.describe(), onnx) == {"shape": [], "type": "object"}
    tensorflow = {"model_format": "tensorflow"}
    assert cortex_field(named.describe(), tensorflow) == {"shape": [-1, -1, 4], "type": "float32"}


def test_a_set_in_an_answer_is_written_sorted(tmp_path: Path) -> None:
    # json_tricks' json_set_encode (primitives on, Cortex's lib/util.py:43) wrote a set as
    # sorted(set), its iteration order only when the items do not sort: the same list on every
    # replica, where a set of strings iterates in a per-process order.
    code = "def predict(sample, metadata):\n    return {'tags': set(sample), 'mixed': {1, 'a'}}\n"
    project = make_project(tmp_path / "p", ECHO, {"predictor.py": code})
    answer = load_api(project).predict(["pear", "apple", "fig", "kiwi", "banana", "cherry", "date"])
    assert answer["tags"] == ["apple", "banana", "cherry", "date", "fig", "kiwi", "pear"]
    assert sorted(answer["mixed"], key=str) == [1, "a"]
