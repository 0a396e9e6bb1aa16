"""The router's view of the APIs on Ray: an API that cannot serve answers at once, never hangs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from inferd.engine.ray import replica
from inferd.engine.ray.replica import ServeCatalog

FAILED = (
    "The deployment failed to start 3 times in a row. Error:\n"
    "inferd.errors.LoadError: init in predictor.py failed: RuntimeError: no weights\n"
)


class Never:
    """A Serve handle whose calls wait for a replica that never comes (Serve's behaviour when the
    API has none: starting, or failed to start)."""

    def __init__(self) -> None:
        self.calls = 0
        self.describe = self.call = self

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        self.calls += 1
        return asyncio.get_running_loop().create_future()


def catalog(monkeypatch: pytest.MonkeyPatch, statuses: dict[str, str]) -> tuple[ServeCatalog, Never]:
    apps = {
        name: SimpleNamespace(
            status=status,
            message="Failed to update the deployments ['inferd'].",  # the app's message names it only
            deployments={"inferd": SimpleNamespace(message=FAILED if status == "DEPLOY_FAILED" else "")},
        )
        for name, status in statuses.items()
    }
    apps["inferd.v2"] = SimpleNamespace(status="RUNNING", message="", deployments={"router": {}})
    monkeypatch.setattr(ServeCatalog, "_applications", staticmethod(lambda: apps))
    monkeypatch.setattr(replica, "DESCRIBE_TIMEOUT", 0.2)
    found = ServeCatalog()
    handle = Never()
    monkeypatch.setattr(found, "_handle", lambda name: handle)
    return found, handle


def test_a_failed_api_is_not_ready_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    found, handle = catalog(monkeypatch, {"broken": "DEPLOY_FAILED"})

    async def ask() -> tuple[Any, ...]:
        names = await found.names()
        info = await found.info("broken")
        return names, info, await found.forward("broken", b"v2", b"{}")

    names, info, (status, body, header) = asyncio.run(asyncio.wait_for(ask(), 10))
    assert names == ["broken"] and info == {}
    assert status == 503 and header == 0
    assert orjson.loads(body) == {
        "error": "api 'broken' is not ready: init in predictor.py failed: RuntimeError: no weights"
    }
    assert handle.calls == 0  # nothing waits on a replica that will never start


def test_an_api_with_no_replica_yet_is_not_ready_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    found, _ = catalog(monkeypatch, {"starting": "DEPLOYING"})
    assert asyncio.run(asyncio.wait_for(found.info("starting"), 10)) == {}
    assert asyncio.run(asyncio.wait_for(found.info("other"), 10)) is None  # not deployed at all
