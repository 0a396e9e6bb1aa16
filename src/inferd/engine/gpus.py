"""GPUs of this machine, read from the NVIDIA driver (NVML), and which replica holds which.

The local engine gives each replica that asks for ``compute.gpu: N`` N whole devices, named by
UUID in its ``CUDA_VISIBLE_DEVICES`` (UUIDs, because CUDA and NVML may number devices in
different orders). No two replicas share a device unless the API asks for a share of one with
``compute.gpu_memory`` (an inferd extension): then replicas are packed onto a device while
their ``gpu_memory`` sums fit its memory, filling one device before the next so that whole
devices stay free for APIs that need them.

Every NVML call goes through ``Nvml`` (``nvidia-ml-py``, imported lazily), so the placement
logic is tested with a fake driver on machines without a GPU. A missing library, a missing
driver or any NVML failure means no GPUs, with the reason kept for ``compute unavailable``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inferd.config.blocks import Compute
from inferd.config.quantity import format_bytes

log = logging.getLogger("inferd.engine")

INSTALL_HINT = "pip install 'inferd[gpu]'"


@dataclass(frozen=True)
class Gpu:
    """One device: NVML's index, the UUID that ``CUDA_VISIBLE_DEVICES`` names, its memory."""

    index: int
    uuid: str
    name: str
    memory: int


@dataclass(frozen=True)
class Claim:
    """The devices one replica process holds; ``memory`` is its share (``None``: whole devices)."""

    devices: tuple[str, ...]
    memory: int | None = None


@dataclass(frozen=True)
class GpuNeed:
    """What one replica of an API asks for: ``count`` whole devices, or a ``memory`` share of one."""

    count: int
    memory: int | None = None

    def describe(self) -> str:
        if self.memory is not None:
            return f"{format_bytes(self.memory)} of GPU memory (compute.gpu_memory)"
        return f"{self.count} GPU{'s' if self.count != 1 else ''} (compute.gpu)"


@dataclass(frozen=True)
class GpuUsage:
    """One device as one replica sees it: utilisation (0-100, the device's) and memory in bytes."""

    uuid: str
    index: int
    utilization: float | None
    memory_used: int | None
    memory_total: int


class Nvml:
    """The NVML calls inferd makes, on the ``pynvml`` module (or a fake with the same functions)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        module.nvmlInit()

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def devices(self) -> list[Gpu]:
        nvml = self.module
        found = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            found.append(
                Gpu(
                    index=index,
                    uuid=self._text(nvml.nvmlDeviceGetUUID(handle)),
                    name=self._text(nvml.nvmlDeviceGetName(handle)),
                    memory=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                )
            )
        return found

    def usage(self, gpu: Gpu, pids: set[int], exclusive: bool) -> GpuUsage:
        """``gpu``'s utilisation and the memory that processes ``pids`` use on it.

        Where NVML cannot see those processes (another PID namespace, as in some containers), a
        device the replica holds alone reports the device's used memory.
        """
        nvml = self.module
        handle = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
        utilization: float | None
        try:
            utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nvml.NVMLError:
            utilization = None
        memory: int | None = None
        try:
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            # usedGpuMemory is None where the driver may not say (some containers, Windows WDDM).
            mine = [p.usedGpuMemory for p in processes if p.pid in pids and p.usedGpuMemory]
            if mine:
                memory = int(sum(mine))
        except nvml.NVMLError:
            pass
        if memory is None and exclusive:
            memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
        return GpuUsage(gpu.uuid, gpu.index, utilization, memory, gpu.memory)


def _visible(gpus: list[Gpu], setting: str | None) -> tuple[list[Gpu], str]:
    """The devices ``CUDA_VISIBLE_DEVICES`` (of the engine's own process) leaves to replicas."""
    if setting is None:
        return gpus, ""
    kept: list[Gpu] = []
    for entry in (part.strip() for part in setting.split(",")):
        if entry.isdigit():
            match = [gpu for gpu in gpus if gpu.index == int(entry)]
        elif entry.startswith(("GPU-", "MIG-")):
            match = [gpu for gpu in gpus if gpu.uuid.startswith(entry)]
        else:
            match = []
        if not match:
            break  # CUDA ignores an invalid entry and everything after it
        if match[0] not in kept:
            kept.append(match[0])
    reason = "" if kept else f"CUDA_VISIBLE_DEVICES={setting!r} hides every GPU from inferd"
    return kept, reason


@dataclass
class GpuPool:
    """The devices replicas may use, and the NVML session that reports their usage."""

    gpus: list[Gpu] = field(default_factory=list)
    reason: str = ""
    nvml: Nvml | None = None

    @classmethod
    def discover(cls, module: Any = None, visible: str | None = None, environ: bool = True) -> GpuPool:
        """Ask the driver. ``module`` is ``pynvml`` (imported here when not given)."""
        if module is None:
            try:
                import pynvml

                module = pynvml
            except ImportError:
                return cls(reason=f"nvidia-ml-py is not installed ({INSTALL_HINT})")
        try:
            nvml = Nvml(module)
            gpus = nvml.devices()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no usable GPU
            return cls(reason=f"no NVIDIA driver answered (NVML: {exc})")
        if environ and visible is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus, reason = _visible(gpus, visible)
        if not gpus and not reason:
            reason = "the NVIDIA driver reports no GPU"
        return cls(gpus=gpus, reason=reason, nvml=nvml)

    def _free(self, claims: Iterable[Claim]) -> tuple[set[str], dict[str, int]]:
        """Devices some replica holds whole, and the memory shared replicas hold on each other one."""
        whole: set[str] = set()
        shared: dict[str, int] = {}
        for claim in claims:
            for uuid in claim.devices:
                if claim.memory is None:
                    whole.add(uuid)
                else:
                    shared[uuid] = shared.get(uuid, 0) + claim.memory
        return whole, shared

    def assign(self, claims: Iterable[Claim], need: GpuNeed) -> Claim | None:
        """Devices for one more replica needing ``need`` next to ``claims``; ``None`` if none fit."""
        if need.count == 0:
            return Claim(())
        whole, shared = self._free(claims)
        if need.memory is None:
            free = [gpu for gpu in self.gpus if gpu.uuid not in whole and gpu.uuid not in shared]
            if len(free) < need.count:
                return None
            return Claim(tuple(gpu.uuid for gpu in free[: need.count]))
        fits = [
            gpu
            for gpu in self.gpus
            if gpu.uuid not in whole and shared.get(gpu.uuid, 0) + need.memory <= gpu.memory
        ]
        if not fits:
            return None
        # Best fit: the device with the least memory left that still fits (shared devices first).
        best = min(fits, key=lambda gpu: (gpu.memory - shared.get(gpu.uuid, 0), gpu.index))
        return Claim((best.uuid,), need.memory)

    def room(self, claims: Sequence[Claim], need: GpuNeed, limit: int = 1 << 20) -> int:
        """How many more replicas needing ``need`` fit next to ``claims`` (at most ``limit``)."""
        if need.count == 0:
            return limit
        placed = list(claims)
        count = 0
        while count < limit:
            claim = self.assign(placed, need)
            if claim is None:
                break
            placed.append(claim)
            count += 1
        return count

    def shortfall(self, claims: Sequence[Claim], need: GpuNeed) -> str | None:
        """Why one more replica needing ``need`` does not fit (``compute unavailable``), or ``None``."""
        if need.count == 0 or self.assign(claims, need) is not None:
            return None
        wanted = need.describe()
        if not self.gpus:
            return f"needs {wanted} per replica; this machine has no GPU: {self.reason}"
        largest = max(gpu.memory for gpu in self.gpus)
        if need.memory is not None and need.memory > largest:
            return f"needs {wanted} per replica; the largest GPU here has {format_bytes(largest)}"
        if need.count > len(self.gpus):
            return f"needs {wanted} per replica; this machine has {len(self.gpus)}"
        whole, shared = self._free(claims)
        free = sum(gpu.uuid not in whole and gpu.uuid not in shared for gpu in self.gpus)
        return (
            f"needs {wanted} per replica; {free} of {len(self.gpus)} GPUs are free (other replicas hold them)"
        )

    def usage(self, pid: int, claim: Claim) -> list[GpuUsage]:
        """Utilisation and memory of a replica process ``pid`` on each device of ``claim``."""
        if self.nvml is None or not claim.devices:
            return []
        by_uuid = {gpu.uuid: gpu for gpu in self.gpus}
        result = []
        for uuid in claim.devices:
            gpu = by_uuid.get(uuid)
            if gpu is None:
                continue
            try:
                result.append(self.nvml.usage(gpu, {pid}, exclusive=claim.memory is None))
            except Exception as exc:  # a driver hiccup must not break `inferd get` or /metrics
                log.warning("reading GPU %s failed: %s", uuid, exc)
        return result


def gpu_need(compute: Compute) -> GpuNeed:
    """What one replica of an API with this ``compute`` asks of the GPUs."""
    return GpuNeed(compute.gpu, compute.gpu_memory_bytes)


def replica_environment(pool: GpuPool, claim: Claim) -> dict[str, str]:
    """The environment that shows a replica only its devices (none for a replica without GPUs)."""
    if not pool.gpus and not claim.devices:
        return {}  # a machine without GPUs: leave the environment as the user set it
    return {"CUDA_VISIBLE_DEVICES": ",".join(claim.devices)}
