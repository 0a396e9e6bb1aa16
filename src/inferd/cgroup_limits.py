"""The limits a container puts on this machine: its cgroup's CPU quota and memory limit.

A container started with ``docker run --cpus 2 --memory 4g`` (a Kubernetes pod with limits, a
systemd unit with ``CPUQuota=``/``MemoryMax=``) on a larger host sees the host's cores and
memory in ``sched_getaffinity`` and ``/proc/meminfo``: inferd placed replicas for the host, and
the kernel then throttled them or killed them for memory. The limits are read from the cgroup
this process is in and every cgroup above it (the smallest counts), on cgroup v2 (``cpu.max``,
``memory.max``) and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
``memory.limit_in_bytes``). Where none is set, or none can be read, there is no limit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _folders(mount: Path, inside: str) -> list[Path]:
    """``mount``/``inside`` and each folder above it up to ``mount`` (inside a container's own
    cgroup namespace, ``inside`` is ``/`` and ``mount`` is the container's cgroup)."""
    parts = [part for part in inside.split("/") if part and part not in (".", "..")]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _memberships(proc_cgroup: Path) -> dict[str, str]:
    """Controller (``""`` for cgroup v2's unified tree) -> this process's path in it."""
    found: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        _, _, rest = line.partition(":")
        controllers, _, inside = rest.partition(":")
        for controller in controllers.split(",") if controllers else [""]:
            found.setdefault(controller, inside)
    return found


def _cpu_quota(text: str | None, period_text: str | None = None) -> float | None:
    """Cores from v2's ``"QUOTA PERIOD"`` (or v1's quota and period); None for no quota."""
    if text is None:
        return None
    fields = text.split()
    if period_text is not None:
        fields = [fields[0] if fields else "", period_text]
    if len(fields) != 2 or fields[0] in ("max", "-1"):
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _memory(text: str | None) -> int | None:
    if text is None or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < NO_LIMIT else None


def _smallest(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def _cgroups(root: Path | None, proc_cgroup: Path | None) -> tuple[Path, dict[str, str], list[Path]]:
    """The cgroup mount, this process's path per controller, and its cgroup v2 folders (none on
    v1 or hybrid, whose unified tree holds no controller)."""
    root = ROOT if root is None else root
    inside = _memberships(PROC_CGROUP if proc_cgroup is None else proc_cgroup)
    unified = "" in inside and (root / "cgroup.controllers").is_file()
    return root, inside, _folders(root, inside[""]) if unified else []


def cpu_limit(root: Path | None = None, proc_cgroup: Path | None = None) -> float | None:
    """The cores this process's cgroups allow it (their smallest CPU quota), None without one."""
    root, inside, unified = _cgroups(root, proc_cgroup)
    quotas = [_cpu_quota(_read(folder / "cpu.max")) for folder in unified]
    if "cpu" in inside:  # v1: the cpu controller, mounted alone or with cpuacct
        for mount in (root / "cpu", root / "cpu,cpuacct"):
            for folder in _folders(mount, inside["cpu"]):
                period = _read(folder / "cpu.cfs_period_us")
                quotas.append(_cpu_quota(_read(folder / "cpu.cfs_quota_us"), period))
    return _smallest(quotas)


def memory_limit(root: Path | None = None, proc_cgroup: Path | None = None) -> int | None:
    """The bytes this process's cgroups allow it (their smallest memory limit), None without one."""
    root, inside, unified = _cgroups(root, proc_cgroup)
    limits = [_memory(_read(folder / "memory.max")) for folder in unified]
    if "memory" in inside:  # v1
        limits += [
            _memory(_read(folder / "memory.limit_in_bytes"))
            for folder in _folders(root / "memory", inside["memory"])
        ]
    smallest = _smallest(limits)
    return None if smallest is None else int(smallest)


def machine_cpus() -> float:
    """The cores this process may run on, or its cgroup's CPU quota where that is fewer (the
    replicas' room, engine/capacity.py; how quiet the gateway is, gateway/queue.py)."""
    cores = float(len(os.sched_getaffinity(0)))
    quota = cpu_limit()
    return cores if quota is None else min(cores, quota)
