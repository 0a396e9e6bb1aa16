"""Where the kernel can cap a replica's memory: cgroup v2 with a delegated subtree only."""

from __future__ import annotations

import os
from pathlib import Path

from inferd.engine.memlimit import GROUP, MemoryCaps, own_cgroup


def fake_cgroup(root: Path, members: list[int]) -> Path:
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    own = root / "user.slice" / "inferd.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("")
    (own / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in members))
    return own


def test_cgroup_v1_or_hybrid_means_the_rss_watch(tmp_path: Path) -> None:
    v1 = "4:memory:/some/group\n0::/\n"
    assert own_cgroup(tmp_path, v1) is None
    proc = tmp_path / "cgroup"
    proc.write_text(v1)
    assert not MemoryCaps(tmp_path, proc).kernel


def test_a_delegated_cgroup_v2_caps_each_replica(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    own = fake_cgroup(root, [os.getpid()])
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/inferd.service\n")
    (own / GROUP).mkdir()
    (own / GROUP / "cgroup.controllers").write_text("memory\n")
    caps = MemoryCaps(root, proc)
    assert caps.kernel
    group = caps.confine("api-1", 4242, 64 << 20)
    assert group is not None and (group / "memory.max").read_text() == str(64 << 20)
    assert (group / "cgroup.procs").read_text() == "4242"
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert MemoryCaps.killed(group)


def test_a_cgroup_shared_with_other_processes_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    own = fake_cgroup(root, [os.getpid(), 1])  # pid 1 is not ours
    (own / GROUP).mkdir()
    (own / GROUP / "cgroup.controllers").write_text("cpu\n")  # memory not enabled for it yet
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/inferd.service\n")
    caps = MemoryCaps(root, proc)
    assert not caps.kernel and caps.confine("api-1", 4242, 1 << 20) is None
    assert not (own / "inferd-operator").exists()  # nobody was moved
