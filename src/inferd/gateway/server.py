"""The server side of an HTTP connection: what a connection needs from the server it belongs to
(``HttpApp``: the gateway, the admin API, the dashboard), and ``HttpServer``, the defaults and
the capped listener of a server that needs no per-route limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from inferd.gateway import edge
from inferd.gateway.edge import EdgeLimits, Listener
from inferd.gateway.held import HeldAnswers

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.queue import ApiQueue
    from inferd.gateway.wire import Request


class HttpApp(Protocol):
    """What a connection needs from the server it belongs to (the gateway, the admin API)."""

    limits: EdgeLimits
    clock: float
    connections: set[HttpConnection]
    bodies_held: int  # bytes of request bodies still arriving, on every connection (max_body_buffer)
    answers_held: HeldAnswers  # answers written to clients that do not read them (max_answer_buffer)
    # header lines every answer carries, refusals at the edge included: the gateway's CORS line;
    # none for the admin API (pages of other origins read nothing); the dashboard's security headers
    common_headers: bytes

    def admit(self, conn: HttpConnection, method: bytes, path: bytes, headers: dict[bytes, bytes]) -> int:
        """The body limit of a request whose headers just ended, or -1 when it was refused at once."""
        ...

    def handle(self, conn: HttpConnection, request: Request) -> None:
        """Answer ``request`` now or later with ``conn.respond``."""
        ...

    def routeless(self, path: bytes) -> bool:
        """No API reads a body sent to ``path``: one past its limit gets the route's own answer
        (a 404 naming the mistyped API), not a 413."""
        ...

    def finished(
        self, queue: ApiQueue, status: int, conn: HttpConnection, meta: bytes, error: bytes = b""
    ) -> bytes:
        """Account for one answered request (``error``: the error answer's body, for the access
        log); extra response headers (from the replica's metadata)."""
        ...

    def connection_closed(self, conn: HttpConnection) -> None:
        """``conn`` is gone (the listener may accept again)."""
        ...

    def record(
        self, queue: ApiQueue, conn: HttpConnection, request: bytes, status: int, answer: bytes
    ) -> None:
        """Keep a sampled request and its answer for the payload log."""
        ...

    def refused(self, conn: HttpConnection, path: bytes, status: int, error: bytes = b"") -> None:
        """Count a request to ``path`` answered ``status`` (body ``error``) at the edge (its body
        too large, say) as one of its API's requests: metrics, ``inferd get`` and the access log."""
        ...


class HttpServer:
    """Defaults for an ``HttpApp`` that needs no per-route limits (the admin API, the dashboard),
    and its listener, capped as the gateway's is (``edge.Listener``) but at ``SIDE_CONNECTIONS``."""

    body_limit = 1 << 20
    limits = EdgeLimits()
    clock = 0.0
    bodies_held = 0
    answers_held = HeldAnswers(EdgeLimits().max_answer_buffer)  # the admin API's and dashboard's
    # Served to the CLI and to the dashboard's own page only: no other origin's script may read an
    # answer (the gateway's ``CORS`` would let any web page find and fingerprint them on loopback).
    common_headers = b""
    connections: set[HttpConnection]
    listener: Listener | None = None

    async def listen(self, name: str, host: str, port: int, factory: Callable[[], HttpConnection]) -> int:
        """Serve connections from ``factory`` on ``host:port``, at most ``SIDE_CONNECTIONS`` at
        once (``name`` says whose in the warnings); the port."""
        self.listener = Listener(
            edge.listen(host, port), factory, self.connections, edge.SIDE_CONNECTIONS, name
        )
        await self.listener.start()
        port_taken: int = self.listener.sockets[0].getsockname()[1]
        return port_taken

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def admit(self, conn: HttpConnection, method: bytes, path: bytes, headers: dict[bytes, bytes]) -> int:
        return self.body_limit

    def routeless(self, path: bytes) -> bool:
        return False

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.listener is not None and self.listener.paused:
            self.listener.resume()

    def record(
        self, queue: ApiQueue, conn: HttpConnection, request: bytes, status: int, answer: bytes
    ) -> None:
        return None

    def refused(self, conn: HttpConnection, path: bytes, status: int, error: bytes = b"") -> None:
        return None
