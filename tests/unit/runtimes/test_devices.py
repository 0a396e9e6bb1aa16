"""Which provider or device a replica's model runs on, decided from what the framework offers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from inferd.errors import LoadError
from inferd.runtimes import load_runtime
from inferd.runtimes.devices import (
    CPU,
    CUDA,
    TENSORRT,
    Devices,
    configure_tensorflow,
    onnx_provider_in_use,
    onnx_providers,
)

GPU_BUILD = [TENSORRT, CUDA, CPU]


def test_no_gpu_means_the_cpu_provider_even_where_cuda_exists() -> None:
    assert onnx_providers(GPU_BUILD, Devices()) == [CPU]


def test_a_gpu_replica_uses_cuda_then_the_cpu_for_what_cuda_lacks() -> None:
    assert onnx_providers(GPU_BUILD, Devices(gpus=1)) == [(CUDA, {"device_id": 0}), CPU]


def test_tensorrt_only_when_asked_for_and_installed() -> None:
    asked = Devices(gpus=1, tensorrt=True)
    assert onnx_providers(GPU_BUILD, asked) == [(TENSORRT, {"device_id": 0}), (CUDA, {"device_id": 0}), CPU]
    assert onnx_providers([CUDA, CPU], asked) == [(CUDA, {"device_id": 0}), CPU]


def test_a_memory_share_caps_the_cuda_arena() -> None:
    providers = onnx_providers(GPU_BUILD, Devices(gpus=1, gpu_memory=2**30))
    assert providers[0] == (CUDA, {"device_id": 0, "gpu_mem_limit": 2**30})


def test_cpu_only_onnxruntime_fails_to_load_unless_fallback_is_allowed() -> None:
    with pytest.raises(LoadError, match=r"no CUDAExecutionProvider .*onnxruntime-gpu.*cpu_fallback"):
        onnx_providers([CPU], Devices(gpus=1))
    assert onnx_providers([CPU], Devices(gpus=1, cpu_fallback=True)) == [CPU]


def test_a_gpu_provider_that_did_not_start_is_an_error_or_the_allowed_fallback() -> None:
    requested = onnx_providers(GPU_BUILD, Devices(gpus=1))
    assert onnx_provider_in_use(requested, [CUDA, CPU], Devices(gpus=1)) == CUDA
    with pytest.raises(LoadError, match="could not start CUDAExecutionProvider"):
        onnx_provider_in_use(requested, [CPU], Devices(gpus=1))
    assert onnx_provider_in_use(requested, [CPU], Devices(gpus=1, cpu_fallback=True)) == CPU
    assert onnx_provider_in_use([CPU], [CPU], Devices()) == CPU


def test_onnxruntime_here_refuses_a_gpu_it_cannot_use(iris_onnx_model: Path) -> None:
    if CUDA in ort.get_available_providers():
        pytest.fail("this test needs the CPU build of onnxruntime (the GPU build: scripts/gpu_check.py)")
    with pytest.raises(LoadError, match="install onnxruntime-gpu"):
        load_runtime("onnx", iris_onnx_model, devices=Devices(gpus=1))
    runtime = load_runtime("onnx", iris_onnx_model, devices=Devices(gpus=1, cpu_fallback=True))
    assert runtime.device == CPU
    label, _ = runtime.run({"input": np.array([[5.2, 3.6, 1.4, 0.3]], dtype=np.float32)})
    assert list(label) == [0]  # iris-setosa, as on the CPU provider


class FakeTfConfig:
    """``tf.config``'s GPU calls, recording what the runtime asked of them."""

    def __init__(self, gpus: int) -> None:
        self.found = [SimpleNamespace(name=f"/physical_device:GPU:{i}") for i in range(gpus)]
        self.growth: list[str] = []
        self.limits: dict[str, int] = {}
        self.hidden = False
        self.experimental = SimpleNamespace(set_memory_growth=self._growth)

    def list_physical_devices(self, kind: str) -> list[Any]:
        return self.found if kind == "GPU" else []

    def set_visible_devices(self, devices: list[Any], kind: str) -> None:
        self.hidden = devices == [] and kind == "GPU"

    def _growth(self, device: Any, grow: bool) -> None:
        assert grow
        self.growth.append(device.name)

    @staticmethod
    def LogicalDeviceConfiguration(memory_limit: int) -> int:
        return memory_limit

    def set_logical_device_configuration(self, device: Any, configs: list[int]) -> None:
        self.limits[device.name] = configs[0]


def test_tensorflow_grows_memory_on_each_of_its_gpus() -> None:
    config = FakeTfConfig(2)
    assert configure_tensorflow(config, Devices(gpus=2)) == "GPU:0,GPU:1"
    assert config.growth == ["/physical_device:GPU:0", "/physical_device:GPU:1"]


def test_tensorflow_with_a_share_caps_memory_in_mib() -> None:
    config = FakeTfConfig(1)
    configure_tensorflow(config, Devices(gpus=1, gpu_memory=3 * 2**30))
    assert config.limits == {"/physical_device:GPU:0": 3072} and config.growth == []


def test_tensorflow_without_a_gpu_asked_hides_any_it_sees() -> None:
    config = FakeTfConfig(1)
    assert configure_tensorflow(config, Devices()) == "CPU"
    assert config.hidden


def test_tensorflow_cpu_build_fails_a_gpu_replica_unless_fallback_is_allowed() -> None:
    with pytest.raises(LoadError, match=r"TensorFlow sees no GPU.*inferd\[gpu\].*cpu_fallback"):
        configure_tensorflow(FakeTfConfig(0), Devices(gpus=1))
    assert configure_tensorflow(FakeTfConfig(0), Devices(gpus=1, cpu_fallback=True)) == "CPU"
