"""Placement: replicas start only while their compute fits on this machine."""

from __future__ import annotations

import pytest

from inferd.engine.capacity import Capacity, machine_cpus, replica_cpus
from inferd.engine.gpus import Claim, GpuNeed, GpuPool
from tests.unit.engine.fake_nvml import machine


def test_cpu_memory_and_gpu_limit_the_room() -> None:
    gpus = GpuPool.discover(machine(1), environ=False)
    machine_here = Capacity(cpus=2.0, memory=8 * 2**30, gpus=gpus)
    assert machine_here.room([], 0.2, None) == 10  # Cortex's default 200m: ten replicas on two cores
    assert machine_here.room([(0.2, None)] * 9, 0.2, None) == 1
    assert machine_here.room([], 4.0, None) == 0  # compute unavailable
    assert machine_here.room([], 0.5, 3 * 2**30) == 2  # memory binds first
    assert machine_here.room([], 0.1, None, GpuNeed(1)) == 1
    held = [Claim((gpus.gpus[0].uuid,))]
    assert machine_here.room([(0.1, None)], 0.1, None, GpuNeed(1), held) == 0
    assert machine_here.room([], 2.0, None, GpuNeed(1, memory=2**30)) == 1  # the CPU binds first


def test_no_gpu_here_means_no_room_for_gpu_replicas() -> None:
    assert Capacity(cpus=2.0, memory=2**33).room([], 0.2, None, GpuNeed(1)) == 0


def test_the_shortfall_names_what_is_asked_and_what_exists() -> None:
    machine = Capacity(cpus=2.0, memory=8 * 2**30)
    assert machine.shortfall([], 64.0, None) == "needs cpu 64, this machine has 2"
    assert machine.shortfall([], 0.5, 16 * 2**30) == "needs mem 16Gi, this machine has 8Gi"
    assert machine.shortfall([], 0.5, 1000 * 2**30) == "needs mem 1000Gi, this machine has 8Gi"  # not 1e+03
    assert Capacity(cpus=2.0, memory=int(23.47 * 2**30)).shortfall([], 0.5, 2**40) == (
        "needs mem 1024Gi, this machine has 23.5Gi"
    )
    assert machine.shortfall([], 0.2, None, GpuNeed(1)).startswith(
        "needs 1 GPU (compute.gpu) per replica; this machine has no GPU"
    )
    assert machine.shortfall([(1.5, None)], 1.0, None) == (
        "needs cpu 1, 0.5 of this machine's 2 is free (other replicas hold the rest"
        "; set INFERD_CPUS to let replicas reserve more cores than it has)"
    )
    # ten replicas of 0.2 hold it all: none is free (not the 2.2e-16 the float sum leaves)
    assert machine.shortfall([(0.2, None)] * 10, 0.2, None) == (
        "needs cpu 0.2, 0 of this machine's 2 is free (other replicas hold the rest"
        "; set INFERD_CPUS to let replicas reserve more cores than it has)"
    )
    # twenty of 0.1 leave -4.4e-16, which rounded is -0.0: still "0", never "-0"
    assert machine.shortfall([(0.1, None)] * 20, 0.1, None) == (
        "needs cpu 0.1, 0 of this machine's 2 is free (other replicas hold the rest"
        "; set INFERD_CPUS to let replicas reserve more cores than it has)"
    )


def test_inferd_cpus_sets_the_cores_replicas_may_reserve(caplog: pytest.LogCaptureFixture) -> None:
    cores = machine_cpus()  # the cores, or fewer where the cgroup has a quota (a CI job's --cpus 1.5)
    assert replica_cpus({}) == (cores, False)
    assert replica_cpus({"INFERD_CPUS": " "}) == (cores, False)
    assert replica_cpus({"INFERD_CPUS": "16"}) == (16.0, True)
    assert replica_cpus({"INFERD_CPUS": "0.5"}) == (0.5, True)
    for bad in ("0", "-2", "lots", "nan", "inf"):
        assert replica_cpus({"INFERD_CPUS": bad}) == (cores, False)
        assert f"INFERD_CPUS={bad!r} is not a number of cores above 0" in caplog.text
    shared = Capacity(cpus=16.0, memory=8 * 2**30, cpus_set=True)
    assert shared.room([(0.2, None)] * 10, 0.2, None) == 70  # Cortex's 200m: eighty on sixteen
    assert shared.shortfall([], 64.0, None) == "needs cpu 64, INFERD_CPUS allows 16"
    assert shared.shortfall([(0.2, None)] * 80, 0.2, None) == (
        "needs cpu 0.2, 0 of the 16 INFERD_CPUS allows is free (other replicas hold the rest)"
    )
