"""The gateway's life around its routes: listening (as many connections as the open-file limit
allows), the sweeper's tick, the other servers it sweeps, and shutting down (drain the accepted
requests, then close every connection).

``Gateway`` (``gateway/app.py``) is a ``GatewayLifecycle``: its routes and accounting are kept
there, this is the part that runs once at start and once at the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from inferd.gateway import edge, sweeper
from inferd.gateway.apis import ApiTable
from inferd.gateway.edge import EdgeLimits, Listener

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.server import HttpApp
    from inferd.gateway.shadow import Shadows

log = logging.getLogger("inferd.gateway")


class GatewayLifecycle(ApiTable):
    """Starts, sweeps and stops the gateway's listeners and connections."""

    # kept by the gateway (gateway/app.py)
    limits: EdgeLimits
    clock: float
    connections: set[HttpConnection]
    draining: bool
    shadows: Shadows

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Listener] = []
        self._sweeper: asyncio.Task[None] | None = None
        # Other servers of this process (the admin API, the dashboard): their connections get
        # the same timeouts, so a client that never finishes a request cannot hold one.
        self.neighbours: list[HttpApp] = []

    def connect(self) -> HttpConnection:
        """A connection for a client a listener accepted (the gateway's: ``gateway/app.py``)."""
        raise NotImplementedError

    async def start(self, host: str, port: int) -> None:
        """Listen for HTTP on ``host:port`` (at most ``limits.max_connections`` open at once)."""
        loop = asyncio.get_running_loop()
        fds = edge.raise_fd_limit()
        cap = min(self.limits.max_connections, max(64, fds - edge.RESERVED_FDS))
        if cap < self.limits.max_connections:
            log.warning("at most %d connections: the open-file limit is %d", cap, fds)
        listener = Listener(edge.listen(host, port), self.connect, self.connections, cap)
        self._listeners.append(listener)
        await listener.start()
        if self._sweeper is None:
            self._sweeper = loop.create_task(sweeper.tick_forever(self))

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        for listener in self._listeners:
            if listener.paused:
                listener.resume()

    def sweep_also(self, *apps: HttpApp) -> None:
        """Apply this gateway's connection timeouts to ``apps``' connections too."""
        for app in apps:
            app.clock = self.clock
            self.neighbours.append(app)

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for listener in self._listeners for sock in listener.sockets]

    async def drain(self, grace: float) -> None:
        """Refuse new predictions, then wait up to ``grace`` s for accepted ones to finish."""
        self.draining = self.shadows.draining = True
        deadline = time.monotonic() + grace
        while self.total_in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if left := self.total_in_flight():
            log.warning("%d request(s) still running after %.0fs; stopping anyway", left, grace)

    async def close(self) -> None:
        """Stop listening and close every client connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)
