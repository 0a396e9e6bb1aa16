"""Which requests go to their replica with a ``SPIN`` frame, and when the gateway spins for the
answer too (gateway/queue.py; what spinning does: replica/spinning.py). Pure dispatch logic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inferd import cgroup_limits
from inferd.gateway import queue as queue_module
from inferd.gateway.queue import ApiQueue
from inferd.replica import messages
from tests.unit.gateway.test_queue_pipeline import Replica, Request, api_queue


class Spinner(Replica):
    """Records the SPIN frame each request went with, and whether the gateway spun for it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.frames: list[bytes] = []
        self.spun: list[float] = []

    def send(self, kind: bytes, body: bytes, waiter: Any, spin: bytes = b"") -> None:
        super().send(kind, body, waiter, spin)
        self.frames.append(spin)

    def spin_soon(self, until: float) -> None:
        self.spun.append(until)


@pytest.fixture(autouse=True)
def quiet_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """No request of another test running, one client connection, 2 cores' worth of spinning."""
    monkeypatch.setattr(ApiQueue, "running_all", 0)
    monkeypatch.setattr(ApiQueue, "clients", ["the one client"])
    monkeypatch.setattr(ApiQueue, "dormant", 0)
    monkeypatch.setattr(queue_module, "ALONE", 1)


def spinners(count: int, service: float = 0.00005) -> tuple[ApiQueue, list[Spinner]]:
    queue, _ = api_queue(0, service)
    handles = [Spinner(f"r{i}") for i in range(count)]
    for handle in handles:
        queue.add(handle)
    return queue, handles


def test_a_request_running_alone_goes_with_a_spin_frame_and_the_gateway_spins_for_it() -> None:
    queue, (first, second) = spinners(2)
    queue.submit(Request(), messages.PREDICT, b"{}")
    handle = second  # the idle replicas are a stack: the last one added goes first
    assert handle.frames == [queue_module.SPIN] and queue_module.SPIN.startswith(b"\x00\x00\x00\x05s")
    assert len(handle.spun) == 1
    # a second request while the first runs: the gateway is no longer quiet
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert first.frames == [b""] and first.spun == []
    second.answer(1)
    first.answer(1)
    # both answered: quiet again, and the replica that answered last is the one that spins on
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert first.frames == [b"", queue_module.SPIN] and len(first.spun) == 1


def test_a_request_of_another_api_running_means_no_spin() -> None:
    other, (busy,) = spinners(1)
    other.submit(Request(), messages.PREDICT, b"{}")
    queue, (handle,) = spinners(1)
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert handle.frames == [b""] and handle.spun == []
    busy.answer(1)
    handle.answer(1)
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert handle.frames == [b"", queue_module.SPIN]


def test_with_a_second_client_connection_open_neither_spins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ApiQueue, "clients", ["one client", "another, idle between requests"])
    queue, (handle,) = spinners(1)
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert handle.frames == [b""] and handle.spun == []


def test_a_second_connection_silent_for_a_while_does_not_stop_the_spinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ApiQueue, "clients", ["one client", "a metrics scraper between scrapes"])
    monkeypatch.setattr(ApiQueue, "dormant", 1)  # edge.dormant found the scraper silent
    queue, (handle,) = spinners(1)
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert handle.frames == [queue_module.SPIN] and len(handle.spun) == 1


def test_on_a_larger_machine_the_replica_spins_for_a_few_clients_and_the_gateway_for_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue_module, "ALONE", 4)  # 16 cores
    monkeypatch.setattr(ApiQueue, "clients", ["a", "b"])
    queue, (first, second) = spinners(2)
    queue.submit(Request(), messages.PREDICT, b"{}")
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert second.frames == first.frames == [queue_module.SPIN]
    assert second.spun == first.spun == []  # the gateway serves two connections: it never spins


def test_the_gateway_does_not_spin_for_a_slow_api() -> None:
    queue, (handle,) = spinners(1, service=0.05)  # 50 ms a request: far past the 200 us limit
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert handle.frames == [queue_module.SPIN] and handle.spun == []


def test_shadow_copies_never_spin() -> None:
    queue, (handle,) = spinners(1)
    assert queue.submit_copies([(Request(), messages.PREDICT, b"{}")]) == 1
    assert handle.frames == [b""] and handle.spun == []


class Events:
    """The engine's part when a replica is abandoned or lost: nothing to stop here."""

    def replica_stuck(self, handle: Any) -> None: ...

    def replica_lost_because(self, handle: Any) -> None: ...

    def replica_closed(self, handle: Any) -> None: ...


def test_a_replica_abandoned_or_lost_while_running_leaves_the_gateway_quiet_again() -> None:
    queue, handles = spinners(3)
    for handle in handles:
        handle.events = Events()  # type: ignore[assignment]
    stuck, lost, spare = reversed(handles)  # in the order the idle stack gives them out
    queue.submit(Request(), messages.PREDICT, b"{}")
    queue.abandon(stuck, queue.busy[stuck], "past its timeout")  # gateway/deadlines.py
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert lost.frames == [queue_module.SPIN]  # the abandoned request no longer counts
    lost.connection_lost(None)  # the replica crashed: its request is answered 503
    queue.submit(Request(), messages.PREDICT, b"{}")
    assert spare.frames == [queue_module.SPIN] and ApiQueue.running_all == 1


def test_in_a_container_a_quarter_of_its_cpu_quota_counts_not_the_hosts_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker run --cpus 2 on a 64-core host: quiet is one request and one client, as on 2 cores
    root = tmp_path / "cgroup"  # the container's cgroup v2, as tests/unit/engine/test_cgroup_limits.py
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "cpu.max").write_text("200000 100000\n")
    (tmp_path / "proc-self-cgroup").write_text("0::/\n")
    monkeypatch.setattr(cgroup_limits, "ROOT", root)
    monkeypatch.setattr(cgroup_limits, "PROC_CGROUP", tmp_path / "proc-self-cgroup")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    assert queue_module.alone() == 1
    (root / "cpu.max").write_text("max 100000\n")  # no quota: the host's cores
    assert queue_module.alone() == 16


def test_spinning_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_SPIN_US", "0")
    code = "from inferd.gateway import queue; print(queue.SPIN, queue.ALONE)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["b''", "-1"]
