"""The status ``inferd get`` shows for an API, from the engine's state (engine/report.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from inferd.cli.render import api_rows
from inferd.config.load import load_project
from inferd.engine.autoscale import Autoscaler
from inferd.engine.gpus import GpuPool
from inferd.engine.report import describe, replica_info, replica_states, status
from inferd.engine.state import ApiState, Replica, Version
from inferd.replica.handle import ReplicaHandle, ReplicaState
from tests.conftest import suspended


def api(tmp_path: Path, min_replicas: int) -> ApiState:
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: shop\n- kind: api\n  name: cold\n  predictor: {path: p.py}\n"
        f"  compute: {{min_replicas: {min_replicas}, max_replicas: 2}}\n"
    )
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    (config,) = load_project(tmp_path).apis
    return ApiState(version=Version("v2", config), desired=0, autoscaler=Autoscaler(min_replicas, 2, 1))


def starting(version: str) -> Replica:
    """A stand-in for a replica process still loading: status reads version, ready and retired."""
    return cast(Replica, SimpleNamespace(version=version, ready=False, retired=False))


def test_an_api_scaled_to_zero_stays_live_while_its_first_replica_starts(tmp_path: Path) -> None:
    cold = api(tmp_path, min_replicas=0)
    cold.status = status(cold)
    assert cold.status == "live"
    cold.desired, cold.replicas = 1, [starting("v2")]  # a request came: one replica is wanted
    assert status(cold) == "live"


def test_a_rollout_of_an_api_at_min_replicas_0_is_an_update(tmp_path: Path) -> None:
    cold = api(tmp_path, min_replicas=0)
    cold.status = "live"
    cold.desired, cold.replicas = 1, [starting("v1"), starting("v2")]  # v1's replica is replaced
    assert status(cold) == "updating"


def test_a_new_version_that_starts_replicas_at_once_is_updating_until_one_is_ready(tmp_path: Path) -> None:
    cold = api(tmp_path, min_replicas=0)  # init_replicas: 1, deployed over a live version
    cold.status = "updating"  # as the engine sets it when a new version comes
    cold.desired, cold.replicas = 1, [starting("v2")]
    assert status(cold) == "updating"


def test_an_api_waiting_for_its_minimum_is_updating(tmp_path: Path) -> None:
    warm = api(tmp_path, min_replicas=1)
    warm.desired, warm.replicas = 1, [starting("v2")]
    assert status(warm) == "updating"


def test_a_replica_killed_over_its_memory_limit_at_ready_never_makes_the_api_live(tmp_path: Path) -> None:
    """A replica over compute.mem_limit when it says READY is killed; until its socket's close is
    read its handle still says READY, and a status taken then said ``live`` (a deploy exited 0)."""
    greedy = api(tmp_path, min_replicas=1)
    handle = SimpleNamespace(state=ReplicaState.READY)
    replica = Replica("cold-1", "v2", cast(ReplicaHandle, handle), cast(subprocess.Popen[bytes], None))
    greedy.desired, greedy.replicas = 1, [replica]
    assert not replica.ready  # READY said, not yet taken by the engine
    replica.over_mem_limit = True
    greedy.version.oom = True
    assert status(greedy) == "error (out of memory)"
    replica.over_mem_limit, replica.loaded = False, True  # one under the limit, taken
    greedy.version.oom = False
    assert status(greedy) == "live"


def test_a_retiring_replica_is_shown_retiring_not_ready(tmp_path: Path) -> None:
    """``inferd get API -v`` showed an old version's replica draining its last requests as
    ``ready`` while ``/metrics`` counted it ``retiring``: both now say ``retiring``."""
    rolling = api(tmp_path, min_replicas=1)
    process = cast(subprocess.Popen[bytes], SimpleNamespace(pid=4242))
    handle = cast(ReplicaHandle, SimpleNamespace(state=ReplicaState.READY, requests=3, info={}))
    old, new = Replica("cold-1", "v1", handle, process), Replica("cold-2", "v2", handle, process)
    old.retired = True
    rolling.replicas = [old, new]
    shown = [replica_info(replica, GpuPool())["state"] for replica in rolling.replicas]
    assert shown == ["retiring", "ready"]
    assert replica_states({"cold": rolling}) == {"cold": {"retiring": 1, "ready": 1}}


@pytest.mark.parametrize("jump", [86400.0, -86400.0, 300.0])
def test_last_update_counts_the_time_that_passed_not_the_wall_clocks_jump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jump: float
) -> None:
    # A month-long operator's wall clock is stepped (NTP), set (an admin), or jumps (a VM
    # resumed): an API updated a moment ago said "last update 1d" after a day forward, and "0s"
    # for a whole day after a day back. How long ago is the operator's monotonic clock's answer.
    cold = api(tmp_path, min_replicas=0)
    cold.updated()
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + jump)
    info = {**describe(cold, 0, GpuPool()), "url": "", "metrics": {}}
    assert info["last_update"] == pytest.approx(wall(), abs=5)  # when, on the clock of then
    assert 0 <= info["updated_ago"] < 5
    assert api_rows([info]).splitlines()[1].split()[-1] == f"{int(info['updated_ago'])}s"


def test_a_restored_api_keeps_the_age_of_its_last_update(tmp_path: Path) -> None:
    cold = api(tmp_path, min_replicas=0)
    cold.updated(time.time() - 7200)  # restored by a restarted operator: deployed two hours ago
    assert 7200 <= cold.updated_ago() < 7205
    cold.updated(time.time() + 3600)  # written before the clock went back an hour: just now
    assert 0 <= cold.updated_ago() < 5


def test_last_update_counts_the_night_a_suspended_machine_slept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A laptop's lid closed for the night: its wall clock and its boot clock went on, its monotonic
    # clock stopped. An API deployed the evening before said "last update 1m" in the morning.
    cold = api(tmp_path, min_replicas=0)
    cold.updated()
    night = 8 * 3600.0
    suspended(monkeypatch, night)
    assert night <= cold.updated_ago() < night + 5
    info = {**describe(cold, 0, GpuPool()), "url": "", "metrics": {}}
    assert api_rows([info]).splitlines()[1].split()[-1] == "8h"
