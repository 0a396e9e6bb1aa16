"""Which replicas yield the CPU: the APIs that get another API's or a splitter's shadow copies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from inferd.config.schema import Api, ApiConfig, SplitterConfig, TrafficSplitter
from inferd.engine import priority
from inferd.engine.priority import (
    Priorities,
    engine_group_nice,
    group_nice_of,
    set_group_nice,
    set_nice,
    shadow_nice,
    shadow_targets,
)
from inferd.engine.state import Replica
from inferd.replica.handle import ReplicaHandle


def api(name: str, deployment: str = "d", **extra: Any) -> ApiConfig:
    block = Api.model_validate({"kind": "api", "name": name, "predictor": {"path": "p.py"}, **extra})
    return ApiConfig(api=block, deployment=deployment, endpoint=f"/{deployment}/{name}")


def test_the_targets_of_api_and_splitter_shadows_in_their_own_deployment() -> None:
    splitter = TrafficSplitter.model_validate(
        {
            "kind": "traffic_splitter",
            "name": "front",
            "apis": [{"name": "a", "weight": 100}, {"name": "b", "weight": 0}],
            "shadow": {"api": "b"},
        }
    )
    apis = [api("a", shadow={"api": "c", "percent": 10}), api("b"), api("c"), api("a", deployment="other")]
    routed = SplitterConfig(splitter=splitter, deployment="d", endpoint="/d/front")
    assert shadow_targets(apis, [routed]) == {"d/b", "d/c"}
    assert shadow_targets([api("a")], []) == set()


def test_shadow_nice_is_an_offset_from_inferds_own_capped_at_19() -> None:
    assert shadow_nice(0, {}) == 10
    assert shadow_nice(5, {"INFERD_SHADOW_NICE": "4"}) == 9
    assert shadow_nice(15, {}) == 19
    assert shadow_nice(0, {"INFERD_SHADOW_NICE": "0"}) is None  # off
    assert shadow_nice(19, {}) is None  # nothing lower to go to
    assert shadow_nice(0, {"INFERD_SHADOW_NICE": "lots"}) == 10


def test_set_nice_reaches_every_thread_of_a_running_replica() -> None:
    # Linux keeps a nice value per thread: a model's threads, started before a later deploy made
    # the API a shadow, must yield the CPU as its main thread does.
    code = (
        "import sys, threading\n"
        "for _ in range(3): threading.Thread(target=sys.stdin.read, daemon=True).start()\n"
        "print('up', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "up\n"
            base = os.getpriority(os.PRIO_PROCESS, 0)
            wanted = min(19, base + 3)
            assert set_nice(child.pid, wanted)
            threads = os.listdir(f"/proc/{child.pid}/task")
            assert len(threads) == 4
            assert {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in threads} == {wanted}
        finally:
            child.kill()
    assert not set_nice(child.pid, 10)  # gone: nothing to do, and it says so


def test_an_api_a_splitter_sends_clients_to_is_no_shadow() -> None:
    # Was: a shadow target was one whatever its weight, so a challenger promoted while it was
    # the splitter's shadow served every client 10 nice levels down, its autoscaler capped.
    def splitter(weights: dict[str, int], shadow: str) -> SplitterConfig:
        block = TrafficSplitter.model_validate(
            {
                "kind": "traffic_splitter",
                "name": "front",
                "apis": [{"name": name, "weight": weight} for name, weight in weights.items()],
                "shadow": {"api": shadow},
            }
        )
        return SplitterConfig(splitter=block, deployment="d", endpoint="/d/front")

    apis = [api("a"), api("b", shadow={"api": "a"}), api("c", shadow={"api": "b"})]
    assert shadow_targets(apis, [splitter({"a": 100, "b": 0}, "b")]) == {"d/b"}
    assert shadow_targets(apis, [splitter({"a": 0, "b": 100}, "b")]) == {"d/a"}


def test_set_group_nice_reaches_the_autogroup_a_replica_leads_and_no_other() -> None:
    # With autogroups (Linux's default for processes in the root cpu cgroup), a process that
    # leads its own session, as a replica does, competes for the CPU as a group: its own nice
    # value made no difference against the gateway (two busy loops, each in its own session, one
    # at nice 19, got a core half each). The group's nice value does.
    own = engine_group_nice(os.getpriority(os.PRIO_PROCESS, 0))
    mine = group_nice_of("self")
    code = "import sys; print('up', flush=True); sys.stdin.read()"
    for leads in (False, True):
        with subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=leads,
        ) as child:
            try:
                assert child.stdout is not None and child.stdout.readline() == "up\n"
                wanted = min(19, (own or 0) + 3)
                if own is None:  # a kernel without autogroups: nothing to do, and done
                    assert group_nice_of(child.pid) is None
                    assert set_group_nice(child.pid, wanted)
                    continue
                # Not yet the leader of its session: its group is this one's, left alone.
                assert set_group_nice(child.pid, wanted) is leads
                if leads:
                    assert group_nice_of(child.pid) == wanted
                assert group_nice_of("self") == mine
            finally:
                child.kill()
    assert not set_group_nice(child.pid, 10)  # gone


def test_without_autogroups_a_replica_needs_no_group_nice_whether_or_not_it_leads_its_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel built without CONFIG_SCHED_AUTOGROUP shows no /proc/PID/autogroup (CI's did not):
    # there is no group to set, so the engine must not wait for one, led session or not. A fake
    # /proc, since this machine's kernel has autogroups.
    monkeypatch.setattr(priority, "PROC", tmp_path)
    for pid, session in ((4242, 4242), (4343, 1)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (python) S 1 1 {session} 0 -1 4194560\n")
        assert group_nice_of(pid) is None
        assert set_group_nice(pid, 10)
        assert not (tmp_path / str(pid) / "autogroup").exists()
    assert not set_group_nice(4444, 10)  # no such process: not done, and the engine forgets it


def test_an_engine_in_the_root_group_lowers_its_shadows_groups_against_its_own_nice_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process still in the session the machine started with (PID 1's; CI's runner's was) is in
    # the root group: its autogroup file reads empty, yet a replica that leads its own session gets
    # a group of its own, which competes with the engine's threads one by one. Its shadow's
    # replicas' groups must still be lowered (they were not: the engine read "no autogroups").
    # A fake /proc, since this test cannot leave its own session's group for the root one.
    monkeypatch.setattr(priority, "PROC", tmp_path)
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "autogroup").write_text("")
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert group_nice_of("self") is None and engine_group_nice(base) == base
    priorities = Priorities()
    assert priorities.group_base == base and priorities.group_shadow == shadow_nice(base)
    (tmp_path / "self" / "autogroup").unlink()  # a kernel without autogroups: nothing to lower
    assert engine_group_nice(base) is None and Priorities().group_shadow is None


def test_a_kept_low_replica_whose_api_is_a_shadow_again_is_no_longer_replaced() -> None:
    # Promoted, then a shadow again before its replacement was ready: the lower priority it kept
    # is the one it needs now, so it is not replaced (it was, by one started at that priority).
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as child:
        try:
            priorities = Priorities()
            priorities.targets = {"d/shadow"}
            handle = cast(ReplicaHandle, None)  # not read by apply
            replica = Replica("s-1", "v1", handle, child, nice=priorities.shadow, kept_low=True)
            priorities.apply("d/shadow", replica)
            assert not replica.kept_low and priorities.kept_low == []
        finally:
            child.kill()
