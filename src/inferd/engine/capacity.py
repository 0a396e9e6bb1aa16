"""What this machine can hold: replicas are placed only while their ``compute`` fits.

The cores replicas may reserve in all are the machine's, or ``INFERD_CPUS`` when set: more than
the machine has lets many mostly idle APIs share it (each keeps Cortex's default 200m request),
fewer keeps cores for other work. In a container (or any cgroup) with a CPU quota or a memory
limit, the machine is what those allow (``cgroup_limits``), not the host's cores and memory.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from inferd.cgroup_limits import machine_cpus as machine_cpus  # the cores of this machine (or container)
from inferd.cgroup_limits import memory_limit
from inferd.engine.gpus import Claim, GpuNeed, GpuPool

log = logging.getLogger("inferd.engine")

CPUS_ENV = "INFERD_CPUS"


def _total_memory() -> int:
    """The machine's memory, or its cgroup's memory limit where that is smaller."""
    total = 1 << 40
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    limit = memory_limit()
    return total if limit is None else min(total, limit)


Need = tuple[float, int | None]  # cpu cores, memory bytes of one replica


def replica_cpus(environ: Mapping[str, str] = os.environ) -> tuple[float, bool]:
    """The cores replicas may reserve in all, and whether ``INFERD_CPUS`` set them."""
    cores = machine_cpus()
    text = environ.get(CPUS_ENV, "").strip()
    if not text:
        return cores, False
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        log.warning("%s=%r is not a number of cores above 0: using this machine's %g", CPUS_ENV, text, cores)
        return cores, False
    return value, True


@dataclass(frozen=True)
class Capacity:
    """CPU cores, memory bytes and the GPUs (from the driver) available to replicas."""

    cpus: float
    memory: int
    gpus: GpuPool = field(default_factory=GpuPool)
    cpus_set: bool = False  # ``cpus`` came from INFERD_CPUS, not the machine

    @classmethod
    def of_this_machine(cls, environ: Mapping[str, str] = os.environ) -> Capacity:
        cpus, cpus_set = replica_cpus(environ)
        return cls(cpus=cpus, memory=_total_memory(), gpus=GpuPool.discover(), cpus_set=cpus_set)

    def room(
        self,
        used: list[Need],
        cpu: float,
        mem: int | None,
        gpu: GpuNeed | None = None,
        claims: Sequence[Claim] = (),
    ) -> int:
        """How many more replicas needing ``cpu`` cores, ``mem`` bytes and ``gpu`` fit now.

        ``claims`` are the devices every running replica process holds (any API, any version).
        """
        free_cpu = self.cpus - sum(c for c, _ in used)
        count = math.floor(free_cpu / cpu + 1e-9) if cpu > 0 else 1 << 20
        if mem:
            free_mem = self.memory - sum(m or 0 for _, m in used)
            count = min(count, free_mem // mem)
        if gpu is not None and gpu.count:
            count = min(count, self.gpus.room(claims, gpu, limit=max(0, count)))
        return max(0, count)

    def shortfall(
        self,
        used: list[Need],
        cpu: float,
        mem: int | None,
        gpu: GpuNeed | None = None,
        claims: Sequence[Claim] = (),
    ) -> str:
        """Why one more replica needing ``cpu``, ``mem`` and ``gpu`` does not fit, in words."""
        free_cpu = self.cpus - sum(c for c, _ in used)
        free_mem = self.memory - sum(m or 0 for _, m in used)
        checks = [
            (
                "cpu",
                cpu,
                self.cpus,
                free_cpu,
                f"{cpu:g}",
                f"{self.cpus:g}",
                f"{max(round(free_cpu, 6), 0) + 0.0:g}",  # + 0.0: a sum a hair past full rounds to -0.0
            ),
            ("mem", mem or 0, self.memory, free_mem, _size(mem or 0), _size(self.memory), _size(free_mem)),
        ]
        for name, need, total, _, shown, total_shown, _ in checks:
            if need > total + 1e-9:
                if name == "cpu" and self.cpus_set:
                    return f"needs cpu {shown}, {CPUS_ENV} allows {total_shown}"
                return f"needs {name} {shown}, this machine has {total_shown}"
        gpu_reason = None if gpu is None else self.gpus.shortfall(claims, gpu)
        if gpu_reason is not None:
            return gpu_reason
        for name, need, _, free, shown, total_shown, free_shown in checks:
            if need > free + 1e-9:
                by_env = name == "cpu" and self.cpus_set
                whose = f"the {total_shown} {CPUS_ENV} allows" if by_env else f"this machine's {total_shown}"
                held = "other replicas hold the rest"
                if name == "cpu" and not by_env:
                    held += f"; set {CPUS_ENV} to let replicas reserve more cores than it has"
                return f"needs {name} {shown}, {free_shown} of {whose} is free ({held})"
        return "this machine has no room for another replica"


def _size(count: float) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if abs(count) >= size:
            # one decimal at most, never exponent notation (``.3g`` wrote 1000Gi as 1e+03Gi)
            return f"{max(count, 0) / size:.1f}".removesuffix(".0") + unit
    return f"{max(count, 0):.0f}"
