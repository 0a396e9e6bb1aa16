"""A stand-in for ``pynvml`` with the functions inferd calls: GPUs on machines that have none."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str
    memory: int
    name: str = "NVIDIA H200"
    used: int = 0
    utilization: int = 0
    processes: dict[int, int] = field(default_factory=dict)  # pid -> bytes used


class FakeNvml:
    """``pynvml``'s shape: module-level functions on handles (here, the device's index)."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], fail_init: str | None = None) -> None:
        self.gpus = gpus
        self.fail_init = fail_init

    def nvmlInit(self) -> None:
        if self.fail_init is not None:
            raise NVMLError(self.fail_init)

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.gpus[handle].uuid

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self.gpus[handle].name.encode()  # older bindings answer bytes

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        gpu = self.gpus[handle]
        return SimpleNamespace(total=gpu.memory, used=gpu.used, free=gpu.memory - gpu.used)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=self.gpus[handle].utilization, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.gpus[handle].processes.items()
        ]


GIB = 2**30


def machine(count: int, memory: int = 16 * GIB) -> FakeNvml:
    """A driver reporting ``count`` GPUs of ``memory`` bytes each."""
    return FakeNvml([FakeGpu(uuid=f"GPU-{index:08d}-fake", memory=memory) for index in range(count)])
