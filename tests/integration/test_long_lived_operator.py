"""An operator kept up for weeks: what it holds per deployment goes with the deployment.

The operator runs in this process (a real one: its gateway, engine and replicas), so what it
keeps in memory can be counted after each deploy and delete.
"""

from __future__ import annotations

import asyncio
import gc
import json
import urllib.request
from pathlib import Path

from inferd.operator.delete import delete
from inferd.operator.deploy import deploy
from inferd.operator.server import Operator
from tests.conftest import make_project
from tests.integration.conftest import free_port

PROJECT = """
- kind: deployment
  name: {name}
- kind: api
  name: classifier
  onnx:
    model: models/iris.onnx
"""


def test_deleted_deployments_leave_nothing_in_the_operator(tmp_path: Path, iris_onnx_model: Path) -> None:
    """Deploy, a request, delete, under a new deployment name each time (a CI's ``pr-123``): a
    lock, the folder, the splitters, the key variables and the access log's names of each name
    stayed in the operator for good, so it grew with every name it ever deployed."""
    port = free_port()

    def ask(name: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/{name}/classifier", data=json.dumps([[5.1, 3.5, 1.4, 0.2]]).encode()
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)

    async def cycles() -> list[dict[str, int]]:
        operator = Operator(tmp_path / "home", "127.0.0.1", port)
        running = asyncio.create_task(operator.run())
        counts = []
        try:
            while operator.restoring:
                await asyncio.sleep(0.05)
            for cycle in range(3):
                name = f"pr-{cycle}"
                project = make_project(
                    tmp_path / name, PROJECT.format(name=name), models={"models/iris.onnx": iris_onnx_model}
                )
                await deploy(operator, str(project), force=False, refresh=False)
                assert await asyncio.to_thread(ask, name) == 200
                await delete(operator, name)
                while operator.engine.apis:  # its replica drains, then the API is gone
                    await asyncio.sleep(0.05)
                counts.append(
                    {
                        "locks": len(operator.locks),
                        "sources": len(operator.engine.sources),
                        "splitters": len(operator.engine.priorities.splitters),
                        "secrets": len(operator.state.secrets),
                        "access names": len(operator.access_log._names),
                    }
                )
        finally:
            operator.stop_event.set()
            await running
            gc.unfreeze()  # the operator froze this process's heap (operator/heap.py)
        return counts

    nothing = {"locks": 0, "sources": 0, "splitters": 0, "secrets": 0, "access names": 0}
    assert asyncio.run(cycles()) == [nothing] * 3
