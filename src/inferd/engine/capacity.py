"""What this machine can hold: replicas are placed only while their ``compute`` fits."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass


def _total_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 1 << 40


def _gpu_count() -> int:
    """NVIDIA GPUs this process may use (``CUDA_VISIBLE_DEVICES`` narrows the devices found)."""
    devices = (
        [name for name in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", name)]
        if os.path.isdir("/dev")
        else []
    )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return min(len(devices), len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))
    return len(devices)


Need = tuple[float, int | None, int]  # cpu cores, memory bytes, GPUs of one replica


@dataclass(frozen=True)
class Capacity:
    """CPU cores, memory bytes and GPUs available to replicas."""

    cpus: float
    memory: int
    gpus: int = 0

    @classmethod
    def of_this_machine(cls) -> Capacity:
        return cls(cpus=float(len(os.sched_getaffinity(0))), memory=_total_memory(), gpus=_gpu_count())

    def room(self, used: list[Need], cpu: float, mem: int | None, gpu: int = 0) -> int:
        """How many more replicas needing ``cpu`` cores, ``mem`` bytes and ``gpu`` GPUs fit now."""
        free_cpu = self.cpus - sum(c for c, _, _ in used)
        count = math.floor(free_cpu / cpu + 1e-9) if cpu > 0 else 1 << 20
        if mem:
            free_mem = self.memory - sum(m or 0 for _, m, _ in used)
            count = min(count, free_mem // mem)
        if gpu:
            count = min(count, (self.gpus - sum(g for _, _, g in used)) // gpu)
        return max(0, count)

    def shortfall(self, used: list[Need], cpu: float, mem: int | None, gpu: int = 0) -> str:
        """Why one more replica needing ``cpu``, ``mem`` and ``gpu`` does not fit, in words."""
        free_cpu = self.cpus - sum(c for c, _, _ in used)
        free_mem = self.memory - sum(m or 0 for _, m, _ in used)
        free_gpu = self.gpus - sum(g for _, _, g in used)
        checks = [
            ("cpu", cpu, self.cpus, free_cpu, f"{cpu:g}", f"{self.cpus:g}", f"{max(free_cpu, 0):g}"),
            ("mem", mem or 0, self.memory, free_mem, _size(mem or 0), _size(self.memory), _size(free_mem)),
            ("gpu", gpu, self.gpus, free_gpu, str(gpu), str(self.gpus), str(max(free_gpu, 0))),
        ]
        for name, need, total, _, shown, total_shown, _ in checks:
            if need > total + 1e-9:
                return f"needs {name} {shown}, this machine has {total_shown}"
        for name, need, _, free, shown, total_shown, free_shown in checks:
            if need > free + 1e-9:
                return (
                    f"needs {name} {shown}, {free_shown} of this machine's {total_shown} is free "
                    "(other replicas hold the rest)"
                )
        return "this machine has no room for another replica"


def _size(count: float) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if abs(count) >= size:
            return f"{max(count, 0) / size:.3g}{unit}"
    return f"{max(count, 0):.0f}"
