"""Where a replica's model runs: the GPUs it was given, and how each runtime is told so.

The engine shows a replica only its devices (``CUDA_VISIBLE_DEVICES``); here each runtime is
set up to use them: onnxruntime gets the CUDA (or TensorRT) execution provider, TensorFlow
grows GPU memory on demand (or caps it at the replica's ``gpu_memory`` share). A replica asked
to use a GPU that its runtime cannot use fails to load with the reason, unless the API allows
``cpu_fallback``. Pure functions on what the frameworks report, so they are tested without GPUs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from inferd.errors import LoadError

log = logging.getLogger("inferd.replica")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
INSTALL_HINT = "pip install 'inferd[gpu]'"
FALLBACK_HINT = "or set compute.cpu_fallback: true to run on the CPU"


@dataclass(frozen=True)
class Devices:
    """What the API asked for: ``gpus`` devices (the visible ones), a memory share, options."""

    gpus: int = 0
    gpu_memory: int | None = None
    tensorrt: bool = False
    cpu_fallback: bool = False


Provider = str | tuple[str, dict[str, Any]]


def onnx_providers(available: list[str], devices: Devices) -> list[Provider]:
    """The execution providers to create an onnxruntime session with, best first.

    The CPU provider always comes last: onnxruntime runs there the operators the GPU
    providers lack (scikit-learn's ZipMap, for one).
    """
    if devices.gpus == 0:
        return [CPU]
    chosen: list[Provider] = []
    if devices.tensorrt:
        if TENSORRT in available:
            chosen.append((TENSORRT, {"device_id": 0}))
        else:
            log.warning("onnx.tensorrt is set but onnxruntime has no %s; using CUDA's", TENSORRT)
    if CUDA in available:
        options: dict[str, Any] = {"device_id": 0}
        if devices.gpu_memory is not None:
            options["gpu_mem_limit"] = devices.gpu_memory
        chosen.append((CUDA, options))
    if not chosen:
        message = (
            f"compute.gpu is {devices.gpus} but onnxruntime has no {CUDA} (it has: {', '.join(available)}): "
            f"install onnxruntime-gpu ({INSTALL_HINT}), {FALLBACK_HINT}"
        )
        if not devices.cpu_fallback:
            raise LoadError(message)
        log.warning("%s; compute.cpu_fallback is set: running on the CPU", message.partition(":")[0])
    return [*chosen, CPU]


def onnx_provider_in_use(requested: list[Provider], active: list[str], devices: Devices) -> str:
    """The provider the session really runs on; a GPU provider it dropped is a load error.

    onnxruntime quietly falls back to the CPU when a GPU provider cannot start (CUDA or cuDNN
    libraries missing, no device visible).
    """
    wanted = [p if isinstance(p, str) else p[0] for p in requested]
    gpu_wanted = [name for name in wanted if name != CPU]
    if gpu_wanted and not any(name in active for name in gpu_wanted):
        message = (
            f"onnxruntime could not start {gpu_wanted[-1]} (CUDA or cuDNN libraries missing, or no GPU "
            f"visible to the replica): {INSTALL_HINT} on a machine with the NVIDIA driver, {FALLBACK_HINT}"
        )
        if not devices.cpu_fallback:
            raise LoadError(message)
        log.warning("%s; compute.cpu_fallback is set: running on the CPU", message.partition(":")[0])
    return active[0] if active else CPU


def configure_tensorflow(config: Any, devices: Devices) -> str:
    """Set up TensorFlow's GPUs (``tf.config``) before any model loads; the device it runs on.

    The replica sees only its devices; memory grows on demand instead of TensorFlow's default of
    taking a whole device, or is capped at ``gpu_memory`` when the device is shared.
    """
    found = config.list_physical_devices("GPU")
    if devices.gpus == 0:
        if found:
            config.set_visible_devices([], "GPU")
        return "CPU"
    if not found:
        message = (
            f"compute.gpu is {devices.gpus} but TensorFlow sees no GPU (tensorflow-cpu is installed, or "
            f"the CUDA libraries are missing): {INSTALL_HINT}, {FALLBACK_HINT}"
        )
        if not devices.cpu_fallback:
            raise LoadError(message)
        log.warning("%s; compute.cpu_fallback is set: running on the CPU", message.partition(":")[0])
        return "CPU"
    for gpu in found:
        if devices.gpu_memory is not None:
            limit = config.LogicalDeviceConfiguration(memory_limit=devices.gpu_memory // 2**20)
            config.set_logical_device_configuration(gpu, [limit])
        else:
            config.experimental.set_memory_growth(gpu, True)
    return ",".join(str(gpu.name).removeprefix("/physical_device:") for gpu in found)
