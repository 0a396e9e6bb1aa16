"""``GET /healthz``'s list of the APIs it waits for (``ApiTable.not_ready``)."""

from __future__ import annotations

from inferd.config.schema import Api, ApiConfig
from inferd.gateway.apis import ApiTable
from inferd.gateway.queue import ApiQueue
from inferd.replica.handle import ReplicaHandle, ReplicaState


def queue(name: str, min_replicas: int) -> ApiQueue:
    api = Api.model_validate(
        {
            "kind": "api",
            "name": name,
            "predictor": {"path": "p.py"},
            "compute": {"min_replicas": min_replicas},
        }
    )
    return ApiQueue(ApiConfig(api=api, deployment="d", endpoint=f"/d/{name}"))


def test_healthz_waits_for_every_api_but_one_scaled_to_zero() -> None:
    # README: 200 once every API of the project exists and has a ready replica, an API scaled
    # to zero (min_replicas: 0) aside, which starts one at its first request.
    table = ApiTable()
    table.draining = False
    table.apis = {"d/warm": queue("warm", 1), "d/cold": queue("cold", 0)}
    table.expected = {"d/warm", "d/cold", "d/later"}
    assert table.not_ready() == ["later", "warm"] and not table.ready
    table.expected.discard("d/later")
    replica = ReplicaHandle("warm", "warm-1", "v1", events=None)  # type: ignore[arg-type]
    replica.state = ReplicaState.READY
    table.apis["d/warm"].add(replica)
    assert table.not_ready() == [] and table.ready
