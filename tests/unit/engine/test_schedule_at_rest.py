"""The reconcile step of an API at rest costs the same however many APIs the machine runs.

Each step asked ``placement.room`` what the machine has left, which adds up every replica of
every API: one tick of the loop (every 0.25 s) was quadratic in the APIs. With 81 idle Python
APIs the operator spent 22% of a core doing nothing, 39% with 141.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from inferd.config.load import load_project
from inferd.engine import placement, schedule
from inferd.engine.autoscale import Autoscaler
from inferd.engine.capacity import Capacity, Need
from inferd.engine.gpus import Claim
from inferd.engine.state import ApiState, Replica, Version
from inferd.replica.messages import ReplicaSpec

APIS = 50


def at_rest(tmp_path: Path) -> dict[str, ApiState]:
    """``APIS`` APIs of one replica each, ready and of their current version."""
    blocks = "".join(
        f"- kind: api\n  name: a{i}\n  predictor: {{path: p.py}}\n  compute: {{cpu: 10m}}\n"
        for i in range(APIS)
    )
    (tmp_path / "cortex.yaml").write_text("- kind: deployment\n  name: many\n" + blocks)
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    apis = {}
    for config in load_project(tmp_path).apis:
        version = Version("v1", config, spec=cast(ReplicaSpec, object()))
        replica = SimpleNamespace(
            id="r", version="v1", ready=True, retired=False, gpus=Claim(()), source=None, kept_low=False
        )
        state = ApiState(version=version, desired=1, autoscaler=Autoscaler(1, 1, 1))
        state.replicas = [cast(Replica, replica)]
        apis[config.key] = state
    return apis


def test_a_step_of_an_api_at_rest_does_not_add_up_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apis = at_rest(tmp_path)
    capacity = Capacity(cpus=2.0, memory=1 << 40)
    added_up: list[str] = []
    held = placement.held

    def counted(*args: Any, **kwargs: Any) -> list[Need]:
        added_up.append("held")
        return held(*args, **kwargs)

    monkeypatch.setattr(placement, "held", counted)
    for state in apis.values():
        actions = schedule.step(state, 0.0, capacity, apis)
        assert (actions.start, actions.retire, state.unschedulable) == (0, [], False)
    assert not added_up
    # one that wants another replica still asks what is left, and gets it
    wanting = apis["many/a7"]
    wanting.desired = 2
    assert schedule.step(wanting, 0.0, capacity, apis).start == 1
    assert added_up
    # and one that does not fit is still short of room
    wanting.desired = 1000
    actions = schedule.step(wanting, 0.0, capacity, apis)
    assert actions.start == 200 - APIS  # two cores of 10m replicas, less those running
    assert wanting.unschedulable
