"""Adding APIs to the gateway, and deleting a deployment of many, cost what the APIs number, not
its square (counted in calls made, which a loaded machine does not change).

Each API added or removed named every API's V2 / TF Serving model again, and each API deleted
settled every replica's priority again: deleting a deployment of 1,000 APIs held the event loop
that answers requests 1.25 s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from inferd.config.load import load_project
from inferd.config.schema import ApiConfig
from inferd.gateway.app import Gateway
from inferd.operator.delete import delete_now
from inferd.operator.deploy import deploy
from inferd.operator.server import Operator
from tests.conftest import calls_made, make_project


def project(root: Path, deployment: str, count: int) -> Path:
    """Deployment ``deployment`` of ``count`` Python APIs that start no replica, in ``root``."""
    blocks = "".join(
        f"- kind: api\n  name: a{i}\n  predictor: {{path: p.py}}\n"
        "  compute: {min_replicas: 0, init_replicas: 0}\n"
        for i in range(count)
    )
    return make_project(
        root / deployment,
        f"- kind: deployment\n  name: {deployment}\n" + blocks,
        {"p.py": "def predict(sample, metadata):\n    return sample\n"},
    )


def configs(root: Path, deployment: str, count: int) -> list[ApiConfig]:
    return list(load_project(project(root, deployment, count)).apis)


def test_adding_and_removing_apis_costs_the_same_per_api_however_many_there_are(tmp_path: Path) -> None:
    def cost(count: int) -> tuple[int, int]:
        gateway = Gateway()
        apis = configs(tmp_path / str(count), "many", count)

        def add() -> None:
            for config in apis:
                gateway.add_api(config)

        def remove() -> None:
            for config in apis:
                gateway.remove_api(config.key)

        added, _ = calls_made(add)
        assert gateway.models["a0"].key == "many/a0" and len(gateway.models) == 2 * count
        removed, _ = calls_made(remove)
        assert not gateway.models and not gateway.clashes
        return added, removed

    small, large = cost(25), cost(100)
    # four times the APIs, four times the work: it was 7 and 14 times
    assert large[0] < 5 * small[0], (small, large)
    assert large[1] < 5 * small[1], (small, large)


def test_a_name_two_deployments_share_is_their_deployment_dot_name_until_one_goes(tmp_path: Path) -> None:
    gateway = Gateway()
    one, other = configs(tmp_path, "one", 2), configs(tmp_path, "other", 1)
    for config in [*one, *other]:
        gateway.add_api(config)
    assert gateway.clashes == {"a0": ["one.a0", "other.a0"]}
    assert "a0" not in gateway.models and gateway.models["a1"].key == "one/a1"
    assert gateway.models["other.a0"].name == "other/a0"
    gateway.remove_api("one/a0")
    assert gateway.clashes == {} and gateway.models["a0"].key == "other/a0"
    assert gateway.models["a0"].name == "a0" and "one.a0" not in gateway.models


def test_deleting_a_deployment_of_many_apis_costs_the_same_per_api(tmp_path: Path) -> None:
    def cost(count: int) -> int:
        async def deleted() -> int:
            operator = Operator(tmp_path / f"home{count}", "127.0.0.1", 0)
            try:
                for deployment in ("kept", "gone"):
                    await deploy(
                        operator, str(project(tmp_path / str(count), deployment, count)), False, False
                    )
                calls, answer = calls_made(lambda: delete_now(operator, "gone"))
                assert answer["message"] == "deleting deployment 'gone'"
                assert {
                    state.status for key, state in operator.engine.apis.items() if key.startswith("gone/")
                } == {"stopping"}
                return calls
            finally:
                await operator.engine.stop()

        return asyncio.run(deleted())

    small, large = cost(25), cost(100)
    assert large < 5 * small, (small, large)
