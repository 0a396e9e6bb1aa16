"""An API's replica on Ray answers its endpoint, not the paths below it (Serve routes by prefix)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.requests import Request

from inferd.config.load import load_project
from inferd.engine.ray.replica import ApiReplica
from tests.conftest import make_project

CONFIG = """
- kind: deployment
  name: pyd
- kind: api
  name: echo
  predictor:
    path: predictor.py
"""


def post(replica: ApiReplica, path: str) -> tuple[int, Any]:
    """What the replica answers a POST of ``1`` that Serve's proxy routed to it."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"1", "more_body": False}

    # What Serve's proxy hands over: the whole path, and the route prefix as root_path.
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": path, "root_path": "/pyd/echo"}
    scope.update(headers=[], query_string=b"")
    response = asyncio.run(replica(Request(scope, receive)))
    return response.status_code, orjson.loads(bytes(response.body))


def test_only_the_endpoint_itself_is_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the replica changes into the project; the test gets its cwd back
    root = make_project(
        tmp_path / "p", CONFIG, {"predictor.py": "def predict(sample, metadata):\n    return sample\n"}
    )
    (config,) = load_project(root).apis
    replica = ApiReplica(config.model_dump(mode="json"), str(root))
    assert post(replica, "/pyd/echo") == (200, 1)
    assert post(replica, "/pyd/echo/") == (200, 1)  # as the local gateway
    assert post(replica, "/pyd/echo/sub") == (404, {"error": "no API at /pyd/echo/sub"})
