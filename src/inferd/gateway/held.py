"""Answers held for clients that do not read them, counted across all connections.

An answer is written whole to its connection (the gateway never holds a replica back for a slow
client), so a client that asks for a large answer and never reads it leaves that answer in the
gateway's memory until the keep-alive timeout closes its connection: thirty such clients of an
API answering 20 MB each held 610 MB of the gateway for a minute, and a few hundred would have
taken the machine's memory. Past ``--max-answer-buffer`` (all connections together), the
client that stopped reading first is disconnected and its unsent bytes dropped, as the
keep-alive timeout would have done later; clients that read their answers are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import termios
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection

log = logging.getLogger("inferd.gateway")

LINGER_NONE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets
# What a client must have taken since it was last seen to count as reading: a client that stopped
# still takes a few kilobytes (its receive window) after its writing paused.
PROGRESS = 64 * 1024
OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)  # Linux's SIOCOUTQ: a socket's unsent bytes


class HeldAnswers:
    """Unsent answer bytes of the connections whose clients stopped reading, oldest stall first."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.total = 0
        self._held: OrderedDict[HttpConnection, int] = OrderedDict()
        # what each client had not taken yet (``unsent``) when last seen: less since, it reads
        self._seen: dict[HttpConnection, int] = {}
        self._warned = False

    def hold(self, conn: HttpConnection, size: int) -> None:
        """``conn``'s client is not reading and ``size`` bytes wait for it (called when its
        writing pauses, and again when more is written meanwhile): past the budget, the
        connections that stalled first are closed until the rest fit."""
        before = self._held.get(conn, 0)  # an entry keeps its place: the oldest stall goes first
        self._held[conn] = size
        self.total += size - before
        if conn.transport is not None:
            self._seen[conn] = unsent(conn.transport)
        spared: set[HttpConnection] = set()
        while self.total > self.budget and self._held:
            oldest, held = self._held.popitem(last=False)
            self.total -= held
            seen = self._seen.pop(oldest, None)
            transport = oldest.transport
            if transport is None:
                continue
            now = unsent(transport)
            if seen is not None and seen - now >= PROGRESS and oldest not in spared:
                # It has read since: a client downloading a large answer at its own pace (its
                # writing stays paused for the whole answer), not one that stopped: its stall
                # counts from now, behind the others' (it was reset before clients that had
                # stopped reading since).
                spared.add(oldest)
                size = transport.get_write_buffer_size()
                self._held[oldest] = size
                self._seen[oldest] = now
                self.total += size
                continue
            if not self._warned:
                self._warned = True
                log.warning(
                    "answers not read by their clients hold more than %d bytes: the clients that "
                    "stopped reading first are disconnected",
                    self.budget,
                )
            reset(transport)

    def reading(self, conn: HttpConnection) -> bool:
        """Whether ``conn``'s client has taken ``PROGRESS`` bytes since it was last seen (then it
        is seen now, and its stall counts from now): it downloads its answer, slowly."""
        transport = conn.transport
        seen = self._seen.get(conn)
        if transport is None or seen is None:
            return False
        now = unsent(transport)
        if seen - now < PROGRESS:
            return False
        self._seen[conn] = now
        if conn in self._held:
            self._held.move_to_end(conn)
        return True

    def release(self, conn: HttpConnection) -> None:
        """``conn``'s client reads again (or is gone): its bytes are no longer counted."""
        self.total -= self._held.pop(conn, 0)
        self._seen.pop(conn, None)


def unsent(transport: asyncio.Transport) -> int:
    """Bytes written to ``transport`` that its client has not taken yet: in its buffer, and in
    the kernel's send queue (where the system tells it), which a reading client empties first."""
    size = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and OUTQ is not None:
        with contextlib.suppress(OSError, ValueError):
            size += struct.unpack("i", fcntl.ioctl(sock.fileno(), OUTQ, b"\0\0\0\0"))[0]
    return size


def reset(transport: asyncio.Transport) -> None:
    """Close at once, unsent bytes dropped, the client told so (TCP RST): a plain close leaves
    the unsent bytes with the kernel, which goes on offering them to a client that never reads."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # a socket already gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_NONE)
    transport.abort()
