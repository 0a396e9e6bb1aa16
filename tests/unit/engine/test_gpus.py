"""GPU capacity from the driver and device assignment, with NVML faked (and real where absent)."""

from __future__ import annotations

import sys

import pytest

from inferd.engine.gpus import Claim, GpuNeed, GpuPool, replica_environment
from tests.unit.engine.fake_nvml import GIB, FakeGpu, FakeNvml, machine


def pool(count: int, memory: int = 16 * GIB) -> GpuPool:
    return GpuPool.discover(machine(count, memory), environ=False)


def test_count_names_and_memory_come_from_the_driver() -> None:
    found = GpuPool.discover(machine(2, 80 * GIB), environ=False)
    assert [(g.index, g.uuid, g.name, g.memory) for g in found.gpus] == [
        (0, "GPU-00000000-fake", "NVIDIA H200", 80 * GIB),
        (1, "GPU-00000001-fake", "NVIDIA H200", 80 * GIB),
    ]
    assert found.reason == ""


def test_a_failing_driver_means_no_gpus_with_the_reason() -> None:
    found = GpuPool.discover(FakeNvml([], fail_init="Driver Not Loaded"), environ=False)
    assert found.gpus == []
    assert "Driver Not Loaded" in found.reason
    assert "no GPU" in (found.shortfall([], GpuNeed(1)) or "")


def test_the_real_binding_reports_gpus_or_why_there_are_none() -> None:
    found = GpuPool.discover()  # nvidia-ml-py itself, on whatever driver this machine has
    if found.gpus:
        assert found.reason == "" and all(gpu.memory > 0 and gpu.uuid for gpu in found.gpus)
    else:  # no NVIDIA driver here: a reason, never an exception
        assert "NVML" in found.reason or "nvidia-ml-py" in found.reason or "CUDA_VISIBLE" in found.reason


def test_without_nvidia_ml_py_there_are_no_gpus_and_the_reason_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    found = GpuPool.discover()
    assert found.gpus == []
    assert found.reason == "nvidia-ml-py is not installed (pip install 'inferd[gpu]')"


def test_cuda_visible_devices_of_the_engine_narrows_the_devices() -> None:
    nvml = machine(4)
    assert [g.index for g in GpuPool.discover(nvml, visible="2,0").gpus] == [2, 0]
    assert [g.index for g in GpuPool.discover(nvml, visible="GPU-00000003").gpus] == [3]
    assert [g.index for g in GpuPool.discover(nvml, visible="1,bogus,2").gpus] == [1]  # CUDA stops there
    hidden = GpuPool.discover(nvml, visible="")
    assert hidden.gpus == [] and "CUDA_VISIBLE_DEVICES" in hidden.reason


def test_whole_devices_are_never_shared_between_replicas() -> None:
    gpus = pool(3)
    claims: list[Claim] = []
    for _ in range(3):
        claim = gpus.assign(claims, GpuNeed(1))
        assert claim is not None
        claims.append(claim)
    assert sorted(d for c in claims for d in c.devices) == [g.uuid for g in gpus.gpus]
    assert gpus.assign(claims, GpuNeed(1)) is None
    assert gpus.room(claims, GpuNeed(1)) == 0


def test_a_replica_gets_n_devices_and_room_counts_whole_replicas() -> None:
    gpus = pool(5)
    assert gpus.room([], GpuNeed(2)) == 2
    first = gpus.assign([], GpuNeed(2))
    assert first is not None and len(first.devices) == 2
    second = gpus.assign([first], GpuNeed(2))
    assert second is not None and not set(first.devices) & set(second.devices)
    assert gpus.assign([first, second], GpuNeed(2)) is None  # one device left: not enough
    assert gpus.room([first, second], GpuNeed(1)) == 1


def test_no_gpu_asked_means_no_device_and_no_limit() -> None:
    gpus = pool(0)
    assert gpus.assign([], GpuNeed(0)) == Claim(())
    assert gpus.room([], GpuNeed(0), limit=7) == 7
    assert gpus.shortfall([], GpuNeed(0)) is None


def test_sharing_packs_memory_shares_onto_one_device_first() -> None:
    gpus = pool(2, memory=16 * GIB)
    need = GpuNeed(1, memory=6 * GIB)
    claims: list[Claim] = []
    for _ in range(4):
        claim = gpus.assign(claims, need)
        assert claim is not None
        claims.append(claim)
    by_device = [c.devices[0] for c in claims]
    assert by_device[:2] == [gpus.gpus[0].uuid] * 2  # 12 of 16 GiB: the third share goes next door
    assert by_device[2:] == [gpus.gpus[1].uuid] * 2
    assert gpus.assign(claims, need) is None
    # A whole-device replica cannot take a device that shared replicas use, nor the reverse.
    assert gpus.assign(claims[:2], GpuNeed(1)) == Claim((gpus.gpus[1].uuid,))
    whole = Claim((gpus.gpus[0].uuid,))
    assert gpus.assign([whole], need) == Claim((gpus.gpus[1].uuid,), 6 * GIB)


def test_compute_unavailable_names_what_is_missing() -> None:
    assert "this machine has no GPU" in (pool(0).shortfall([], GpuNeed(1)) or "")
    assert pool(2).shortfall([], GpuNeed(4)) == "needs 4 GPUs (compute.gpu) per replica; this machine has 2"
    gpus = pool(2)
    taken = [Claim((g.uuid,)) for g in gpus.gpus]
    assert "0 of 2 GPUs are free" in (gpus.shortfall(taken, GpuNeed(1)) or "")
    too_big = pool(1, memory=8 * GIB).shortfall([], GpuNeed(1, memory=10 * GIB))
    assert (
        too_big == "needs 10Gi of GPU memory (compute.gpu_memory) per replica; the largest GPU here has 8Gi"
    )


def test_usage_reports_the_replicas_memory_and_the_devices_utilisation() -> None:
    nvml = FakeNvml(
        [
            FakeGpu("GPU-a", 16 * GIB, used=5 * GIB, utilization=37, processes={4242: 3 * GIB, 7: 2 * GIB}),
            FakeGpu("GPU-b", 16 * GIB, used=GIB, utilization=5),
        ]
    )
    gpus = GpuPool.discover(nvml, environ=False)
    [usage] = gpus.usage(4242, Claim(("GPU-a",)))
    assert (usage.index, usage.utilization, usage.memory_used, usage.memory_total) == (
        0,
        37.0,
        3 * GIB,
        16 * GIB,
    )
    # Process not visible to NVML (another PID namespace): a device held alone reports its use.
    [alone] = gpus.usage(99, Claim(("GPU-b",)))
    assert alone.memory_used == GIB
    [shared] = gpus.usage(99, Claim(("GPU-b",), memory=GIB))
    assert shared.memory_used is None
    # A driver that lists the process without its memory: the device's use, when held alone.
    nvml.gpus[1].processes = {99: None}  # type: ignore[dict-item]
    [unknown] = gpus.usage(99, Claim(("GPU-b",)))
    assert unknown.memory_used == GIB
    assert pool(0).usage(1, Claim(())) == []


def test_replicas_see_only_their_devices() -> None:
    gpus = pool(2)
    assert replica_environment(gpus, Claim(("GPU-00000001-fake",))) == {
        "CUDA_VISIBLE_DEVICES": "GPU-00000001-fake"
    }
    assert replica_environment(gpus, Claim(())) == {"CUDA_VISIBLE_DEVICES": ""}  # no GPU asked: none seen
    assert replica_environment(pool(0), Claim(())) == {}  # a CPU machine: environment untouched
