"""Spinning on the socket a moment before sleeping on it, when the gateway runs nothing else.

A replica that has sent its answer waits in ``recv`` for the next request, and the kernel puts it
to sleep. Waking a sleeping process up on another core is dear: on the 2-core VM of
docs/benchmarks.md a round trip between two processes over a socketpair took 51-58 µs with both
sleeping between messages and 4.7 µs with both reading in a loop (``MSG_DONTWAIT``;
bench/wakeup.py), and a request of one connection to the iris example went through two such
wake-ups (gateway to replica and back). So when the gateway says, with a ``SPIN`` frame before a
request, that it runs (about) nothing else (the machine's cores are mostly idle, and its client
waits on each answer in turn), the replica reads its socket without blocking for a while after
answering, and sleeps only if nothing came: the next request finds it awake.

The gateway sends no ``SPIN`` while it runs more requests (then a spinning replica would take a
core from the gateway and the other replicas), nor with shadow copies. A replica spins only while
requests have been coming soon after its answers: for at most three times the time the next
request has taken to come (smoothed), and not at all once that time passes the gateway's limit (a
client that thinks between requests never finds the replica spinning, so it costs no CPU).
Between reads it yields its core to any process waiting for one (``sched_yield``). With one
client connection the gateway spins for the answer likewise (``ReplicaHandle.spin_for_answer``,
for up to three times the API's time per request): gateway/queue.py decides both.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from time import perf_counter

LIMIT = struct.Struct(">I")  # the SPIN frame's payload: the limit in microseconds

_NOW = socket.MSG_DONTWAIT
_CHUNK = 1 << 16


class Spin:
    """Whether and how long a replica spins on its socket after answering."""

    __slots__ = ("gap", "limit")

    def __init__(self) -> None:
        self.limit = 0.0  # seconds, from the last SPIN frame
        self.gap = 0.0  # seconds from an answer's send to the next request's bytes, smoothed

    def set_limit(self, payload: bytes) -> None:
        if len(payload) == LIMIT.size:
            self.limit = LIMIT.unpack(payload)[0] / 1e6

    def next_bytes(self, recv: Callable[..., bytes], since: float) -> bytes:
        """The gateway's next bytes after an answer sent at ``since`` (b"": it closed the socket):
        read without blocking while the spin lasts, then blocking."""
        limit = self.limit
        gap = self.gap
        chunk = None
        if gap < limit:
            until = since + min(limit, 3 * gap if gap else limit)
            while True:
                try:
                    chunk = recv(_CHUNK, _NOW)
                    break
                except BlockingIOError:
                    if perf_counter() >= until:
                        break
                    os.sched_yield()
        if chunk is None:
            chunk = recv(_CHUNK)
        self.gap = gap + (perf_counter() - since - gap) * 0.25
        return chunk
