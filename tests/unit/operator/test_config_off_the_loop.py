"""The operator (and ``inferd serve --reload``) reads a project's config off the event loop,
which is the gateway's too.

A deploy parsed the cortex.yaml on it twice (the user's folder, then its snapshot), a restart
once per deployment, a reload once per edit: every API's requests waited meanwhile. A
4,900-line config held them 0.6 s at each deploy, unchanged or not, and one of 2.2 MB (37,000
lines) 3.3 s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from inferd.config.load import load_project
from inferd.config.schema import Project
from inferd.engine.local import LocalEngine
from inferd.errors import ConfigError
from inferd.operator import deploy, reload, restore, snapshots
from inferd.operator.server import Operator
from tests.conftest import make_project


def on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_deploys_and_restores_read_the_config_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = "".join(
        f"- kind: api\n  name: a{i}\n  predictor: {{path: p.py}}\n"
        "  compute: {min_replicas: 0, init_replicas: 0}\n"
        for i in range(3)
    )
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: many\n" + blocks,
        {"p.py": "def predict(sample, metadata):\n    return sample\n"},
    )
    read_on_the_loop: list[bool] = []

    def recorded(*args: Any, **kwargs: Any) -> Project:
        read_on_the_loop.append(on_the_loop())
        return load_project(*args, **kwargs)

    for module in (deploy, snapshots, restore, reload):
        monkeypatch.setattr(module, "load_project", recorded)

    async def deployed() -> dict[str, Any]:
        operator = Operator(tmp_path / "home", "127.0.0.1", 0)
        try:
            return await deploy.deploy(operator, str(project), False, False)
        finally:
            await operator.engine.stop()

    async def restored() -> list[str]:
        operator = Operator(tmp_path / "home", "127.0.0.1", 0)
        operator.state.load()  # as its run() does first
        try:
            await operator.restore()
            return sorted(operator.engine.apis)
        finally:
            await operator.engine.stop()

    assert asyncio.run(deployed())["message"] == "deployment started"
    assert len(read_on_the_loop) == 2  # the folder, then its snapshot
    assert asyncio.run(restored()) == ["many/a0", "many/a1", "many/a2"]
    assert len(read_on_the_loop) == 3
    assert not any(read_on_the_loop), read_on_the_loop
    # `inferd serve --reload`: an edit of the config (one that changes no API's entry)
    reloader = reload.Reloader(load_project(project), cast(LocalEngine, None), lambda line: None)
    asyncio.run(reloader.reload({project / "cortex.yaml"}))
    assert len(read_on_the_loop) == 4
    assert not any(read_on_the_loop), read_on_the_loop


def test_a_deploy_while_a_restore_reads_its_config_cannot_take_the_restored_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore holds its deployment's endpoints from its first step, before any deploy is
    read: its config read off the event loop, a deploy of another deployment whose config was
    read first (a restored config of many APIs takes longer) took the endpoint, the restore too,
    and the one added last had it. The deploy waits for the restored configs to be read."""
    api = "- kind: api\n  name: {0}\n  endpoint: /shared\n  predictor: {{path: p.py}}\n"
    api += "  compute: {{min_replicas: 0, init_replicas: 0}}\n"
    files = {"p.py": "def predict(sample, metadata):\n    return sample\n"}
    far = make_project(tmp_path / "far", "- kind: deployment\n  name: far\n" + api.format("far"), files)
    near = make_project(tmp_path / "near", "- kind: deployment\n  name: near\n" + api.format("near"), files)
    reading, gate = threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Project:  # the restore's read, until the deploy is done or waits
        reading.set()
        gate.wait(60)  # (a test that fails, not one that hangs)
        return load_project(*args, **kwargs)

    class Waits(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for the deployments being restored" in record.getMessage():
                gate.set()

    async def deployed() -> None:
        operator = Operator(tmp_path / "home", "127.0.0.1", 0)
        try:
            await deploy.deploy(operator, str(far), False, False)
        finally:
            await operator.engine.stop()

    async def deployed_during_a_restore() -> str:
        operator = Operator(tmp_path / "home", "127.0.0.1", 0)
        operator.state.load()
        restoring = asyncio.ensure_future(operator.restore())
        try:
            await asyncio.to_thread(reading.wait, 60)
            deploying = asyncio.ensure_future(deploy.deploy(operator, str(near), False, False))
            deploying.add_done_callback(lambda _: gate.set())
            try:
                await deploying
            except ConfigError as exc:
                return exc.message
            finally:
                await restoring
            return "deployed"
        finally:
            gate.set()
            await operator.engine.stop()

    asyncio.run(deployed())
    monkeypatch.setattr(restore, "load_project", slow)
    logger, handler, level = (
        logging.getLogger("inferd.operator"),
        Waits(),
        logging.getLogger("inferd.operator").level,
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        said = asyncio.run(deployed_during_a_restore())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert said == (
        "api 'near': endpoint /shared is already served by api 'far' of deployment 'far' (being restored)"
    )
