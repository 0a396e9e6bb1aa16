"""A Ray replica says what its model runs on, as a local one does."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.cli.render import api_detail
from inferd.config.load import load_project
from inferd.engine.ray.replica import ApiReplica
from tests.conftest import example


def test_the_replica_reports_its_provider(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the replica changes into the project; the test gets its cwd back
    project = load_project(example("iris-onnx"))
    (config,) = project.apis
    status = ApiReplica(config.model_dump(mode="json"), str(project.root)).status()
    assert status["device"] == "CPUExecutionProvider"
    assert status["cuda_visible_devices"] is None  # compute.gpu: 0


def test_get_v_shows_what_a_ray_api_runs_on() -> None:
    api = {
        "status": "live",
        "up_to_date": 1,
        "available": 1,
        "requested": 1,
        "last_update": None,
        "url": "http://10.0.0.1:8000/iris/classifier",
        "endpoint": "/iris/classifier",
        "replicas": [{"id": "r1", "state": "running"}],
        "device": "CUDAExecutionProvider",
    }
    assert "runs on: CUDAExecutionProvider" in api_detail(api, verbose=True)
    assert "runs on: CUDAExecutionProvider" not in api_detail(api)
