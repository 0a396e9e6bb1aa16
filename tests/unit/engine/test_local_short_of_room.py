"""A tick of the control loop costs what the APIs number, not its square, while many are short of room.

Each API that wants a replica it cannot place asked what the machine has left, which added up
every API's replicas, then again for the reason it shows, then whether any replica was going
away: each tick (every 0.25 s) was quadratic in the APIs. A 100-API project of Cortex's default
``cpu: 200m`` on two cores (90 APIs ``compute unavailable``) beside 260 idle APIs kept the
operator at 36% of a core doing nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from inferd.config.blocks import Compute
from inferd.config.load import load_project
from inferd.engine import placement
from inferd.engine.local import LocalEngine
from inferd.engine.state import ApiState
from tests.unit.engine.test_local_failures import Sink

APIS = 40


def test_a_tick_with_many_apis_short_of_room_adds_up_the_machine_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    blocks = "".join(
        f"- kind: api\n  name: a{i}\n  predictor: {{path: p.py}}\n  compute: {{cpu: 64}}\n"
        for i in range(APIS)
    )
    (project / "cortex.yaml").write_text("- kind: deployment\n  name: big\n" + blocks)
    (project / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    cpu_cores, rolling = Compute.cpu_cores, placement._rolling
    asked: list[str] = []

    def counted(compute: Compute) -> Any:
        asked.append("cpu")
        return cpu_cores.fget(compute)  # type: ignore[attr-defined]

    def counted_rolling(state: ApiState) -> bool:
        asked.append("rolling")
        return rolling(state)

    async def scenario() -> tuple[LocalEngine, Sink, int]:
        sink = Sink()
        engine = LocalEngine(sink, home=tmp_path / "home", log_dir=tmp_path / "home" / "logs")
        await engine.apply(load_project(project))
        engine.reconcile()  # the first tick finds them short of room
        monkeypatch.setattr(Compute, "cpu_cores", property(counted))
        monkeypatch.setattr(placement, "_rolling", counted_rolling)
        engine.reconcile()
        monkeypatch.undo()
        statuses = {state.status for state in engine.apis.values()}
        await engine.stop()
        return engine, sink, len(statuses)

    engine, sink, kinds = asyncio.run(scenario())
    assert kinds == 1
    assert all(state.status == "compute unavailable" for state in engine.apis.values())
    assert all(reason and "needs cpu 64" in reason for reason in sink.errors.values()), sink.errors
    # each API's need, and each replica's, a few times: it was each API's for each API (3,200
    # needs here, and whether each other API's rollout frees room: 1,560)
    assert asked.count("cpu") <= 4 * APIS, asked.count("cpu")
    assert asked.count("rolling") <= 4 * APIS, asked.count("rolling")
