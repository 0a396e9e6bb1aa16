"""Placement: a shadow API never holds the room the APIs clients wait on want."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferd.config.load import load_project
from inferd.config.schema import ApiConfig
from inferd.engine import placement
from inferd.engine.autoscale import Autoscaler
from inferd.engine.capacity import Capacity
from inferd.engine.gpus import Claim
from inferd.engine.state import ApiState, Replica, Version

CONFIG = """
- kind: deployment
  name: shop
- kind: api
  name: champion
  predictor: {path: p.py}
  compute: {cpu: 500m}
  shadow: {api: candidate, percent: 100}
- kind: api
  name: candidate
  predictor: {path: p.py}
  compute: {cpu: 500m}
"""


def states(tmp_path: Path) -> dict[str, ApiState]:
    (tmp_path / "cortex.yaml").write_text(CONFIG)
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    found = {}
    for config in load_project(tmp_path).apis:
        found[config.key] = ApiState(version=Version("v1", config), desired=1, autoscaler=Autoscaler(1, 1, 1))
    return found


def running(count: int, retired: int = 0, source: Version | None = None) -> list[Replica]:
    """Stand-ins for replica processes: placement counts them and reads ``retired``, ``gpus`` and
    the version they run only."""
    version = "v1" if source is None else source.id
    return [
        cast(Replica, SimpleNamespace(retired=i < retired, gpus=Claim(()), version=version, source=source))
        for i in range(count)
    ]


def test_a_shadow_gets_only_the_room_its_primary_does_not_want(tmp_path: Path) -> None:
    apis = states(tmp_path)
    champion, candidate = apis["shop/champion"], apis["shop/candidate"]
    two_cores = Capacity(cpus=2.0, memory=1 << 40)
    shadows = {"shop/candidate"}
    # the champion has what it wants: the shadow may fill the rest (2 cores, 0.5 each)
    champion.replicas, champion.desired = running(1), 1
    assert placement.shadow_ceiling(two_cores, apis, candidate, shadows) == 3
    # the champion's autoscaler wants 3: the shadow keeps the one core left
    champion.desired = 3
    assert placement.shadow_ceiling(two_cores, apis, candidate, shadows) == 1
    # a draining replica of the champion still holds its room, and does not count as wanted
    champion.replicas = running(2, retired=1)
    assert placement.shadow_ceiling(two_cores, apis, candidate, shadows) == 0
    # an API that is not a shadow places as before: the shadow's replicas hold theirs
    candidate.replicas = running(2)
    assert placement.room(two_cores, apis, champion) == 0
    # once the champion wants fewer, the room is the shadow's again
    champion.replicas, champion.desired = running(1), 1
    assert placement.shadow_ceiling(two_cores, apis, candidate, shadows) == 3


def test_old_replicas_hold_their_own_version_s_room_and_can_be_left_out(tmp_path: Path) -> None:
    apis = states(tmp_path)
    champion = apis["shop/champion"]
    del apis["shop/candidate"]
    one_core = Capacity(cpus=1.0, memory=1 << 40)
    old_config = champion.config.model_copy(
        update={
            "api": champion.config.api.model_copy(
                update={"compute": champion.config.api.compute.model_copy(update={"cpu": "100m"})}
            )
        }
    )
    champion.replicas = running(2, source=Version("v0", old_config))
    # Was: counted at the new version's cpu (500m each): the machine looked full
    assert placement.held(apis) == [(0.1, None), (0.1, None)]
    assert placement.room(one_core, apis, champion) == 1
    assert placement.room(one_core, apis, champion, without_old=True) == 2


def test_the_ticks_ledger_adds_up_what_held_adds_up_for_each_api(tmp_path: Path) -> None:
    apis = states(tmp_path)
    champion, candidate = apis["shop/champion"], apis["shop/candidate"]
    old_config = champion.config.model_copy(
        update={
            "api": champion.config.api.model_copy(
                update={
                    "compute": champion.config.api.compute.model_copy(update={"cpu": "100m", "mem": "1Mi"})
                }
            )
        }
    )
    champion.replicas = running(2, source=Version("v0", old_config)) + running(1)
    champion.reserved = 3
    candidate.replicas = running(3, retired=1)
    candidate.reserved = 1

    def total(needs: list[tuple[float, int | None]]) -> tuple[float, int]:
        return round(sum(cpu for cpu, _ in needs), 9), sum(mem or 0 for _, mem in needs)

    def same(ledger: placement.Ledger, *only: ApiState) -> None:
        for owner in only or apis.values():
            for without_old in (False, True):
                assert total(ledger.held(owner, without_old)) == total(
                    placement.held(apis, owner, without_old)
                )
            assert ledger.freeing(owner) == placement.freeing(apis, owner)

    ledger = placement.Ledger(apis)
    same(ledger)
    # an API's step changes it: counted again once refreshed
    champion.replicas = champion.replicas[2:]
    champion.reserved = 0
    ledger.refresh(champion)
    candidate.replicas = []
    same(ledger, candidate)  # its own replicas are counted afresh, refreshed or not
    ledger.refresh(candidate)
    same(ledger)
    del apis["shop/candidate"]  # a deleted API's last step
    ledger.refresh(candidate)
    same(ledger)


MIXED = "- kind: deployment\n  name: mix\n" + "".join(
    f"- kind: api\n  name: a{i}\n  predictor: {{path: p.py}}\n  compute: {{cpu: {cpu}{mem}}}\n"
    for i, (cpu, mem) in enumerate(
        [("100m", ""), ("250m", ", mem: 100Mi"), ("1", ", mem: 1Gi"), ("300m", ""), ("1.7", ", mem: 300Mi")]
    )
)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> list[ApiConfig]:
    root = tmp_path_factory.mktemp("mixed")
    (root / "cortex.yaml").write_text(MIXED)
    (root / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    return list(load_project(root).apis)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_ledger_answers_as_held_and_freeing_for_any_apis_as_each_steps(
    mixed: list[ApiConfig], data: st.DataObject
) -> None:
    """Every API's room, shortfall and whether room is being freed, asked with the tick's ledger
    and without it, in any state (rollouts of another compute, draining, reserved, deleted, an
    update failed or out of memory, compute unavailable), before and after each API's step
    changes it (replicas started, retired or gone, reservations, an API gone)."""
    draw = data.draw
    apis: dict[str, ApiState] = {}
    for config in draw(st.lists(st.sampled_from(mixed), min_size=1, max_size=5, unique_by=lambda c: c.key)):
        old = Version("v0", draw(st.sampled_from(mixed)))
        version = Version(
            "v1", config, error=draw(st.sampled_from([None, "failed"])), oom=draw(st.booleans())
        )
        state = ApiState(version=version, desired=draw(st.integers(0, 4)), autoscaler=Autoscaler(1, 1, 1))
        for source, retired in draw(
            st.lists(st.tuples(st.sampled_from([old, version, None]), st.booleans()), max_size=4)
        ):
            state.replicas += running(1, retired=int(retired), source=source)
        state.reserved = draw(st.integers(0, 3))
        state.deleting = draw(st.booleans())
        state.status = draw(st.sampled_from(["live", "updating", "compute unavailable"]))
        apis[config.key] = state
    capacity = Capacity(
        cpus=draw(st.sampled_from([1.0, 2.0, 3.5])), memory=draw(st.sampled_from([1 << 30, 3 << 30]))
    )
    ledger = placement.Ledger(apis)
    for state in list(apis.values()):
        if draw(st.booleans()):  # asked (the ledger is added up when first asked)
            for without_old in (False, True):
                assert placement.room(capacity, apis, state, without_old, ledger) == placement.room(
                    capacity, apis, state, without_old
                )
            assert placement.shortfall(capacity, apis, state, ledger) == placement.shortfall(
                capacity, apis, state
            )
            assert ledger.freeing(state) == placement.freeing(apis, state)
        change = draw(st.sampled_from(["none", "start", "retire", "gone", "reserve", "status", "deleted"]))
        if change == "start":
            state.replicas += running(1, source=state.version)
        elif change == "retire" and state.replicas:
            state.replicas[0].retired = True
        elif change == "gone" and state.replicas:
            state.replicas.pop()
        elif change == "reserve":
            state.reserved = draw(st.integers(0, 3))
        elif change == "status":
            state.status = draw(st.sampled_from(["live", "compute unavailable"]))
        elif change == "deleted" and state.deleting:
            del apis[state.key]
        ledger.refresh(state)
