"""A container's CPU quota and memory limit are the machine inferd places replicas on.

The cgroup trees here are folders laid out as the kernel shows them (cgroup v2, v1, hybrid), so
each layout is checked on any machine; checked by hand on this machine's real v1 hierarchy too
(a cgroup with ``cpu.cfs_quota_us`` 150000 and ``memory.limit_in_bytes`` 1 GiB: 1.5 cores, 1 GiB).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd import cgroup_limits
from inferd.cgroup_limits import cpu_limit, memory_limit
from inferd.engine.capacity import Capacity


def tree(root: Path, files: dict[str, str], membership: str) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(membership)
    return proc


def test_cgroup_v2_the_smallest_limit_of_the_cgroup_and_those_above_it(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = tree(
        root,
        {
            "cgroup.controllers": "cpu memory",
            "cpu.max": "max 100000",  # a container's own namespace root, say: no quota there
            "system.slice/cpu.max": "400000 100000",
            "system.slice/memory.max": "max",
            "system.slice/docker-1.scope/cpu.max": "250000 100000",
            "system.slice/docker-1.scope/memory.max": str(4 << 30),
        },
        "0::/system.slice/docker-1.scope\n",
    )
    assert cpu_limit(root, proc) == 2.5
    assert memory_limit(root, proc) == 4 << 30
    # a parent's smaller limit is the one that holds
    (root / "system.slice/memory.max").write_text(str(3 << 30))
    assert memory_limit(root, proc) == 3 << 30


def test_cgroup_v2_inside_a_namespace_reads_its_root(tmp_path: Path) -> None:
    # docker's default on cgroup v2: the container sees its own cgroup as "/".
    root = tmp_path / "cgroup"
    proc = tree(
        root,
        {"cgroup.controllers": "cpu memory", "cpu.max": "50000 100000", "memory.max": "536870912"},
        "0::/\n",
    )
    assert cpu_limit(root, proc) == 0.5
    assert memory_limit(root, proc) == 512 << 20


def test_cgroup_v1_quota_and_memory_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    membership = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
    proc = tree(
        root,
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/cpu.cfs_period_us": "100000",
            "memory/docker/abc/memory.limit_in_bytes": str(2 << 30),
            "memory/memory.limit_in_bytes": "9223372036854771712",  # v1's "no limit"
        },
        membership,
    )
    assert cpu_limit(root, proc) == 3.0
    assert memory_limit(root, proc) == 2 << 30


def test_no_limit_anywhere_or_nothing_readable_is_no_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    # this machine's layout: v1 controllers beside an empty unified tree, no quota, no limit
    membership = "4:memory:/process_api/70d8\n2:cpuacct:/\n1:cpu:/\n0::/\n"
    proc = tree(
        root,
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
            "memory/process_api/70d8/memory.limit_in_bytes": "9223372036854771712",
        },
        membership,
    )
    assert cpu_limit(root, proc) is None
    assert memory_limit(root, proc) is None
    assert cpu_limit(root, tmp_path / "absent") is None
    assert memory_limit(tmp_path / "nowhere", proc) is None
    (root / "cpu/cpu.cfs_quota_us").write_text("garbage")
    assert cpu_limit(root, proc) is None


def test_a_containers_limits_are_the_machine_replicas_are_placed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker run --cpus 1.5 --memory 1g on a larger host: two replicas of cpu 1 do not fit,
    # and the reason names the 1.5 cores the container has, not the host's.
    root = tmp_path / "cgroup"
    proc = tree(
        root,
        {"cgroup.controllers": "cpu memory", "cpu.max": "150000 100000", "memory.max": str(1 << 30)},
        "0::/\n",
    )
    monkeypatch.setattr(cgroup_limits, "ROOT", root)
    monkeypatch.setattr(cgroup_limits, "PROC_CGROUP", proc)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    machine = Capacity.of_this_machine(environ={})
    assert (machine.cpus, machine.memory) == (1.5, 1 << 30)
    assert machine.room([], 1.0, None) == 1
    assert machine.shortfall([], 2.0, None) == "needs cpu 2, this machine has 1.5"
    assert machine.shortfall([], 0.5, 2 << 30) == "needs mem 2Gi, this machine has 1Gi"
