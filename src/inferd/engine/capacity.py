"""What this machine can hold: replicas are placed only while their ``compute`` fits."""

from __future__ import annotations

import math
import os
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


@dataclass(frozen=True)
class Capacity:
    """CPU cores and memory bytes available to replicas."""

    cpus: float
    memory: int

    @classmethod
    def of_this_machine(cls) -> Capacity:
        return cls(cpus=float(len(os.sched_getaffinity(0))), memory=_total_memory())

    def room(self, used: list[tuple[float, int | None]], cpu: float, mem: int | None) -> int:
        """How many more replicas needing ``cpu`` cores and ``mem`` bytes fit next to ``used``."""
        free_cpu = self.cpus - sum(c for c, _ in used)
        count = math.floor(free_cpu / cpu + 1e-9) if cpu > 0 else 1 << 20
        if mem:
            free_mem = self.memory - sum(m or 0 for _, m in used)
            count = min(count, free_mem // mem)
        return max(0, count)
