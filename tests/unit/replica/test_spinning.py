"""Spinning (replica/spinning.py): a replica spins on its socket after answering a request the
gateway runs alone, and the gateway spins for the answer (``ReplicaHandle.spin_for_answer``).

What spinning buys is that the process never sleeps waiting for the other: the kernel counts
each sleep as a voluntary context switch of the thread, so that count is what these tests read
(and the CPU time a thread used, never the clock). The other side is another process, as it is
for a gateway and its replica.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from time import perf_counter, thread_time

import pytest
import uvloop

from inferd.replica import messages
from inferd.replica.handle import ReplicaHandle
from inferd.replica.spinning import LIMIT, Spin


def sleeps() -> int:
    """How many times this thread has slept (voluntary context switches)."""
    with open("/proc/thread-self/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc/thread-self/status")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def send_later(
    theirs: socket.socket, data: bytes, close: bool = False, delay: float = 0.02, read: int = 0
) -> subprocess.Popen[bytes]:
    """A process that says it is ready, reads ``read`` bytes, then sends ``data`` ``delay``
    seconds later (or closes its end)."""
    ready, told = os.pipe()
    code = (
        f"import os, socket, time; s = socket.socket(fileno={theirs.fileno()}); os.write({told}, b'r'); "
        f"n = {read}\nwhile n > 0: n -= len(s.recv(n))\n"
        f"time.sleep({delay}); s.close() if {close} else s.sendall({data!r})"
    )
    child = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno(), told])
    os.close(told)
    try:
        assert os.read(ready, 1) == b"r"
    finally:
        os.close(ready)
    return child


def spin_with(limit_us: int) -> Spin:
    spin = Spin()
    spin.set_limit(LIMIT.pack(limit_us))
    return spin


def test_bytes_that_come_while_it_spins_are_read_without_sleeping(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    spin = spin_with(10_000_000)  # 10 s: far beyond the 20 ms the other process waits
    child = send_later(theirs, b"next request")
    before = sleeps()
    assert spin.next_bytes(ours.recv, perf_counter()) == b"next request"
    assert sleeps() == before
    child.wait(30)


def test_without_a_spin_frame_it_sleeps_until_the_bytes_come(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    child = send_later(theirs, b"next request")
    before = sleeps()
    assert Spin().next_bytes(ours.recv, perf_counter()) == b"next request"
    assert sleeps() > before
    child.wait(30)


def test_a_closed_socket_ends_the_spin_with_no_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    child = send_later(theirs, b"", close=True)
    theirs.close()  # the child's copy is the last one
    assert spin_with(10_000_000).next_bytes(ours.recv, perf_counter()) == b""
    child.wait(30)


def test_it_stops_spinning_for_a_client_slower_than_the_limit(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # Requests that come 200 ms after each answer, with a limit of 50 ms: once its first spins
    # were spent in vain, the replica sleeps at once (a thinking client costs it no CPU).
    ours, theirs = pair
    spin = spin_with(50_000)
    for _ in range(3):
        child = send_later(theirs, b"x", delay=0.2)
        spin.next_bytes(ours.recv, perf_counter())
        child.wait(30)
    assert spin.gap > spin.limit
    child = send_later(theirs, b"y", delay=0.2)
    before = thread_time()
    assert spin.next_bytes(ours.recv, perf_counter()) == b"y"
    used = thread_time() - before
    child.wait(30)
    assert used < 0.01  # a spin would have used its 50 ms (half of them on a core shared with another)


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x00\x00\x00\x00"])
def test_a_malformed_limit_leaves_the_spin_as_it_was(payload: bytes) -> None:
    spin = spin_with(200)
    spin.set_limit(payload)
    assert spin.limit == pytest.approx(0.0002)


class Waiter:
    trace = b""

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None:
        self.replies.append((status, body))

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None:
        raise AssertionError("no stream here")


async def gateway_side(ours: socket.socket, theirs: socket.socket, spin: bool) -> tuple[Waiter, int]:
    """A request to a replica process that answers 20 ms later; the waiter and this thread's sleeps
    until it had its answer, with the gateway spinning for it or waiting on its event loop."""
    handle = ReplicaHandle("api", "r1", "v1", events=None)  # type: ignore[arg-type]
    await asyncio.get_running_loop().connect_accepted_socket(lambda: handle, ours)
    request = messages.frame(messages.PREDICT, b"{}")
    child = send_later(theirs, messages.reply_frame(200, b'"answer"'), read=len(request))
    waiter = Waiter()
    before = sleeps()
    handle.send(messages.PREDICT, b"{}", waiter)
    if spin:  # as gateway/queue.py has it: once the event loop has run what is ready
        handle.spin_soon(perf_counter() + 10)
        await asyncio.sleep(0)
    while not waiter.replies:
        await asyncio.sleep(0.001)
    slept = sleeps() - before
    handle.close()
    child.wait(30)
    return waiter, slept


@pytest.mark.parametrize("spin", [True, False])
def test_the_gateway_spinning_for_an_answer_gets_it_without_sleeping(
    pair: tuple[socket.socket, socket.socket], spin: bool
) -> None:
    waiter, slept = asyncio.run(gateway_side(*pair, spin))
    assert waiter.replies == [(200, b'"answer"')]
    assert (slept == 0) is spin


class SlowClient(Waiter):
    """A stream's client that stops reading at the first item: the gateway pauses reading the
    replica (backpressure, gateway/stream.py) until it reads again."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[bytes] = []

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None:
        self.items.append(payload)
        if len(self.items) == 1:
            handle.pause_reading()


async def paused_stream(ours: socket.socket, theirs: socket.socket) -> tuple[list[bytes], SlowClient]:
    """A stream the gateway spins for: its first item pauses reading, its second item and its end
    come 20 ms later. The items read by the end of the spin, and the client once answered."""
    handle = ReplicaHandle("api", "r1", "v1", events=None)  # type: ignore[arg-type]
    await asyncio.get_running_loop().connect_accepted_socket(lambda: handle, ours)
    client = SlowClient()
    handle.send(messages.PREDICT, b"{}", client)
    theirs.sendall(messages.frame(messages.CHUNK, b"1"))
    end = messages.reply_frame(200, b"")
    child = send_later(theirs, messages.frame(messages.CHUNK, b"2") + end[:4] + messages.END + end[5:])
    handle.spin_for_answer(perf_counter() + 5)
    while_spinning = list(client.items)
    handle.resume_reading()  # the client reads again
    while not client.replies:
        await asyncio.sleep(0.001)
    handle.close()
    child.wait(30)
    return while_spinning, client


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_gateway_spinning_for_a_stream_reads_nothing_once_its_client_stopped_reading(
    pair: tuple[socket.socket, socket.socket], loop: str
) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        while_spinning, client = runner.run(paused_stream(*pair))
    assert while_spinning == [b"1"]  # paused at the first item: the spin stopped reading too
    assert client.items == [b"1", b"2"] and client.replies == [(200, b"")]  # the rest, once resumed
