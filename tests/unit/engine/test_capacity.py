"""Placement: replicas start only while their compute fits on this machine."""

from __future__ import annotations

from inferd.engine.capacity import Capacity


def test_cpu_memory_and_gpu_limit_the_room() -> None:
    machine = Capacity(cpus=2.0, memory=8 * 2**30, gpus=1)
    assert machine.room([], 0.2, None) == 10  # Cortex's default 200m: ten replicas on two cores
    assert machine.room([(0.2, None, 0)] * 9, 0.2, None) == 1
    assert machine.room([], 4.0, None) == 0  # compute unavailable
    assert machine.room([], 0.5, 3 * 2**30) == 2  # memory binds first
    assert machine.room([], 0.1, None, gpu=1) == 1
    assert machine.room([(0.1, None, 1)], 0.1, None, gpu=1) == 0


def test_no_gpu_here_means_no_room_for_gpu_replicas() -> None:
    assert Capacity(cpus=2.0, memory=2**33, gpus=0).room([], 0.2, None, gpu=1) == 0


def test_the_shortfall_names_what_is_asked_and_what_exists() -> None:
    machine = Capacity(cpus=2.0, memory=8 * 2**30, gpus=0)
    assert machine.shortfall([], 64.0, None) == "needs cpu 64, this machine has 2"
    assert machine.shortfall([], 0.5, 16 * 2**30) == "needs mem 16Gi, this machine has 8Gi"
    assert machine.shortfall([], 0.2, None, gpu=1) == "needs gpu 1, this machine has 0"
    assert machine.shortfall([(1.5, None, 0)], 1.0, None) == (
        "needs cpu 1, 0.5 of this machine's 2 is free (other replicas hold the rest)"
    )
