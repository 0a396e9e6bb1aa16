"""Limits at the edge: what one client may cost the gateway, and the listener that enforces the cap.

Defaults never bother an honest client (nginx and uvicorn have the same kind): a request line
and headers of at most 64 KiB, 10 s to send them (and no gap longer than that inside a body, nor
a body slower than 1 KiB/s on average once it has taken 10 s),
60 s of keep-alive idleness, 10,000 open connections (beyond, a new connection takes the place
of an idle one, or accepting pauses until one closes), 8
pipelined requests buffered per connection (reading pauses beyond), 1 GiB of unfinished request
bodies held in all (beyond, the request whose bytes cross it gets a 503), 1 GiB of answers
written to clients that do not read them (beyond, the one that stopped reading first is
disconnected). Timeouts are enforced by a sweep once a second over the connections, so a
request pays no timer of its own.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import resource
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from inferd.errors import UsageError

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection

log = logging.getLogger("inferd.gateway")

# A connection answered early (431, 413, 401) is read and dropped this long, so the client sees
# the answer rather than a reset, then closed.
LINGER_SECONDS = 2.0
# Sockets kept for replicas, logs and the admin API when the connection cap meets the fd limit.
RESERVED_FDS = 256
# Open connections the admin API and the dashboard each hold at most (a few CLI commands and
# browser tabs need far fewer): inside RESERVED_FDS, so a flood of idle connections to either
# cannot take the file descriptors the gateway, the replicas and the CLI need.
SIDE_CONNECTIONS = 64
# Connections closed per sweep tick: closing thousands at once would stall the event loop.
CLOSES_PER_TICK = 200
BACKLOG = 4096
# Bytes per second a request body must arrive at, on average, once it has taken longer than the
# header timeout (a phone on a bad network sends far more; Kestrel's floor is 240).
MIN_BODY_RATE = 1024
# Body bytes of a request read while an earlier one on its connection is unanswered: beyond,
# reading pauses until the answers before it are written (nginx, likewise, reads no further
# than its buffer), so --max-pipeline bodies of 10 MiB cannot each wait in the gateway's memory.
READ_AHEAD = 1 << 20
# At the connection cap, a connection that has sent nothing for this long gives its place to a
# new one (one that connected just now is given the time to send its request).
SILENT_GRACE = 1.0
# A kept-alive connection with no request for this long (a metrics scraper between two scrapes)
# does not count as a client when the gateway decides whether it is quiet (gateway/queue.py).
DORMANT_SECONDS = 1.0


@dataclass(frozen=True)
class EdgeLimits:
    """What one client may hold; ``inferd serve`` flags and the operator's environment set them."""

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 60.0
    max_connections: int = 10_000
    max_pipeline: int = 8
    # Bytes of request bodies still arriving, on all connections together, or waiting in a queue
    # (gateway/waiting.py): each body is bounded by its API's max_body_size and its rate by the
    # sweep, and a queue's length by max_queue_length, but many at once are not.
    max_body_buffer: int = 1 << 30
    # Bytes of answers written to clients that do not read them, on all connections together
    # (gateway/held.py): beyond, the client that stopped reading first is disconnected.
    max_answer_buffer: int = 1 << 30

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **given: float | None) -> EdgeLimits:
        """Limits from keyword values (flags) first, then ``INFERD_<NAME>`` variables, then defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for field in fields(cls):
            name = field.name
            value = given.get(name)
            variable = f"INFERD_{name.upper()}"
            text = "" if value is None else str(value)
            if value is None and env.get(variable, "").strip():
                text = env[variable].strip()
                try:
                    value = float(text)
                except ValueError:
                    raise UsageError(f"{variable} must be a number, not {text!r}") from None
            if value is None:
                continue
            whole = field.type != "float"
            # NaN passed `<= 0` (and then turned a timeout off: no age is above it); an integer
            # limit of nan or inf was a traceback, and 0.5 became 0
            if (
                math.isnan(value)
                or value <= 0
                or (whole and not (math.isfinite(value) and value == int(value)))
            ):
                kind = "a whole number" if whole else "a number"
                raise UsageError(f"{variable} must be {kind} greater than 0, not {text!r}")
            values[name] = int(value) if whole else value
        return cls(**values)  # type: ignore[arg-type]


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


# A name's address that this machine lacks: Docker's /etc/hosts names localhost ::1 too, which
# a container without IPv6 has no socket or address for. The name is served on the others.
ABSENT_ADDRESS = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


def listen(host: str, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Non-blocking listening sockets for every address of ``host`` this machine has (as
    asyncio's servers bind, but for an address that is not here while another one is)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    absent: OSError | None = None
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno not in ABSENT_ADDRESS:
                    raise
                absent = absent or exc
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno not in ABSENT_ADDRESS:
                    raise
                absent = absent or exc
                sockets.pop().close()
                continue
            sock.listen(backlog)
            sock.setblocking(False)
        if not sockets and absent is not None:
            raise absent
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Serves connections on listening sockets while fewer than ``cap`` are open.

    At the cap it stops accepting (new clients wait in the kernel's backlog) and resumes when a
    connection closes. asyncio's servers cannot pause, so each pause closes the server over a
    duplicate of the socket (the socket, its port and its backlog stay) and a resume serves
    a new duplicate; accepting itself stays in uvloop's C code.
    """

    def __init__(
        self,
        sockets: list[socket.socket],
        factory: Callable[[], HttpConnection],
        connections: set[HttpConnection],
        cap: int,
        name: str = "the gateway",
    ) -> None:
        self.sockets = sockets
        self.name = name  # in the warnings: whose cap
        self.factory = factory
        self.connections = connections
        self.cap = cap
        self.paused = True
        self._servers: list[asyncio.Server] = []
        self._resuming: asyncio.Task[None] | None = None
        self._warned = False
        self._evicting = False
        self._room: asyncio.TimerHandle | None = None  # the next look for an idle connection, while paused
        self._closed = False
        # Where an idle connection is looked for at the cap, so that no look scans every
        # connection (10,000 busy ones cost 4-14 ms a look): connections that fell idle after an
        # answer, and those that have sent nothing since they connected, oldest first. Entries
        # are checked when looked at; one that is not idle then is dropped (an idle one is put
        # back by its next answer, a connection that spoke is never silent again), so each look
        # costs what changed since the last, and a connection leaves both when it closes.
        # (OrderedDicts: a plain dict's first key after many deletions at the front is found by
        # walking past each deleted slot.)
        self.rested: OrderedDict[HttpConnection, None] = OrderedDict()
        self.silent: OrderedDict[HttpConnection, None] = OrderedDict()

    async def start(self) -> None:
        """Serve (again): one asyncio server per listening socket, over a duplicate of it."""
        loop = asyncio.get_running_loop()
        self.paused = False
        try:
            for sock in self.sockets:
                server = await loop.create_server(self._accepted, sock=sock.dup(), backlog=BACKLOG)
                if self.paused:  # the cap was reached meanwhile
                    server.close()
                else:
                    self._servers.append(server)
        finally:
            self._resuming = None

    def _accepted(self) -> HttpConnection:
        """A new connection (called by uvloop as it accepts): at the cap, an idle connection
        makes room for it; pause when none is idle."""
        conn = self.factory()
        conn.listener = self
        if len(self.connections) >= self.cap and not self.paused:
            over = len(self.connections) > self.cap
            idle = self._an_idle_one(conn, take=over)
            if idle is not None:  # the next one may come in: it takes this one's place
                if over:
                    self._close(idle)
                self.silent[conn] = None
                return conn
            if not self._warned:
                self._warned = True
                log.warning(
                    "%s: %d connections are open (the cap): accepting pauses until one closes",
                    self.name,
                    self.cap,
                )
            # Not now: uvloop is inside its accept; a burst already queued may pass the cap a little.
            self.paused = True
            asyncio.get_running_loop().call_soon(self.pause)
        self.silent[conn] = None
        return conn

    def forget(self, conn: HttpConnection) -> None:
        """``conn`` closed: it is no candidate any more."""
        self.rested.pop(conn, None)
        self.silent.pop(conn, None)

    def _an_idle_one(self, new: HttpConnection | None, take: bool = True) -> HttpConnection | None:
        """A connection that holds no request (idle after its answers, or silent since it
        connected), other than ``new``: at the cap, it gives its place to a new one, so that a
        flood of idle connections cannot keep clients with a request out (nginx, likewise,
        reuses its idle keep-alive connections). ``take``: it leaves the candidates (to be closed)."""
        from inferd.gateway.reader import HEAD, IDLE

        rested = self.rested
        while rested:
            conn = next(iter(rested))
            if (
                conn is not new
                and conn.phase == IDLE
                and conn.transport is not None
                and not (conn.busy or conn.pipeline or conn.unread or conn.lingering or conn.write_paused)
            ):
                if take:
                    del rested[conn]
                return conn
            del rested[conn]
        silent = self.silent
        while silent:
            conn = next(iter(silent))
            if conn is new:
                return None  # the newest: none after it
            if conn.closed or conn.phase != HEAD or conn.head_bytes or conn.busy or conn.lingering:
                del silent[conn]  # it spoke (or is gone): never silent again
                continue
            if conn.transport is None or conn.app.clock - conn.since < SILENT_GRACE:
                return None  # the oldest silent one connected just now: so did the rest
            if take:
                del silent[conn]
            return conn
        return None

    def _close(self, idle: HttpConnection) -> None:
        if not self._evicting:
            self._evicting = True
            log.warning(
                "%s: %d connections are open (the cap): idle ones are closed for new ones",
                self.name,
                self.cap,
            )
        self.connections.discard(idle)
        if idle.transport is not None:
            idle.transport.close()

    def pause(self) -> None:
        self.paused = True
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._room is None and not self._closed:
            self._room = asyncio.get_running_loop().call_later(SILENT_GRACE, self._make_room)

    def _make_room(self) -> None:
        """While paused at the cap, once a grace: a connection that fell idle (or stayed silent)
        gives its place, so that clients waiting in the backlog come in (its close resumes)."""
        self._room = None
        if not self.paused or self._closed:
            return
        idle = self._an_idle_one(None)
        if idle is not None:
            self._close(idle)
        self._room = asyncio.get_running_loop().call_later(SILENT_GRACE, self._make_room)

    def resume(self) -> None:
        """Accept again if below the cap (called when a connection closes), unless closed."""
        if self.paused and not self._closed and self._resuming is None and len(self.connections) < self.cap:
            self._resuming = asyncio.get_running_loop().create_task(self.start())

    def close(self) -> None:
        self._closed = True
        if self._room is not None:
            self._room.cancel()
            self._room = None
        self.pause()
        if self._resuming is not None:
            self._resuming.cancel()
        for sock in self.sockets:
            sock.close()


def sweep(connections: set[HttpConnection], limits: EdgeLimits, now: float) -> list[HttpConnection]:
    """The connections past a timeout: a slow head or body, keep-alive idleness, a stalled reader."""
    from inferd.gateway.reader import BODY, HEAD, IDLE

    expired = []
    header_timeout = limits.header_timeout
    idle_timeout = limits.keepalive_timeout
    for conn in connections:
        age = now - conn.since
        if conn.lingering:
            if now - conn.linger_since > LINGER_SECONDS:
                expired.append(conn)
        elif conn.write_paused:
            if now - conn.write_paused_since > idle_timeout:
                if conn.app.answers_held.reading(conn):  # paused for all of a large answer it reads
                    conn.write_paused_since = now
                else:
                    expired.append(conn)
        elif conn.phase == HEAD:
            if age > header_timeout and not conn.read_paused:  # paused: the gateway's doing
                expired.append(conn)
        elif conn.phase == BODY and not (conn.read_paused or conn.waits_for_continue):  # the gateway's doing
            # No pause longer than the header timeout, and past it, on average at least
            # MIN_BODY_RATE: a body dripped a byte at a time cannot hold the connection for hours.
            taken = now - conn.body_since
            if age > header_timeout or (taken > header_timeout and conn.body_bytes < taken * MIN_BODY_RATE):
                expired.append(conn)
        elif conn.phase == IDLE and not (conn.busy or conn.pipeline or conn.unread) and age > idle_timeout:
            expired.append(conn)
    return expired


def dormant(connections: set[HttpConnection], now: float) -> int:
    """Mark (``conn.dormant``) and count the connections idle between requests for
    ``DORMANT_SECONDS`` or more; a marked one is unmarked when its next request starts or it
    closes (``HttpConnection``), so the count stays true between two sweeps."""
    from inferd.gateway.reader import IDLE

    count = 0
    for conn in connections:
        conn.dormant = found = (
            conn.phase == IDLE
            and not (conn.busy or conn.pipeline or conn.unread)
            and now - conn.since >= DORMANT_SECONDS
        )
        count += found
    return count
