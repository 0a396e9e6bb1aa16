"""At the connection cap, the listener finds an idle connection to replace without scanning
every busy one (was: each accept at the cap walked all 10,000 connections, 4-43 ms of event
loop per accept, measured with 10,000 half-sent requests).

Real ``HttpConnection``s fed bytes as a socket would; only the transport is a stand-in.
"""

from __future__ import annotations

from typing import Any

from inferd.gateway.edge import SILENT_GRACE, Listener
from inferd.gateway.http import HttpConnection
from inferd.gateway.server import HttpServer
from inferd.gateway.wire import Request

HALF_SENT = b"POST /d/iris HTT"  # half a request line: the connection holds a request


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class App(HttpServer):
    """Answers every request at once, as the admin API answers a request without its token."""

    def __init__(self) -> None:
        self.connections: set[HttpConnection] = set()
        self.clock = 100.0

    def handle(self, conn: HttpConnection, request: Request) -> None:
        conn.respond(200, b"{}")

    def finished(self, *args: Any, **kwargs: Any) -> bytes:
        return b""


class Counted(HttpConnection):
    """Counts how often the listener looks at a connection's head (a look at the connection)."""

    looks = 0

    @property
    def head_bytes(self) -> int:
        Counted.looks += 1
        return self._head_bytes

    @head_bytes.setter
    def head_bytes(self, value: int) -> None:
        self._head_bytes = value


def _listener(app: App, cap: int, factory: type[HttpConnection] = HttpConnection) -> Listener:
    listener = Listener([], lambda: factory(app), app.connections, cap)
    listener.paused = True  # only what an accept does to the candidates, no asyncio server
    return listener


def _connect(listener: Listener, app: App, data: bytes = b"", since: float | None = None) -> HttpConnection:
    conn = listener._accepted()
    conn.connection_made(Transport())  # type: ignore[arg-type]
    if since is not None:
        conn.since = since
    if data:
        conn.data_received(data)
    return conn


def test_looks_at_the_cap_do_not_walk_the_busy_connections_again() -> None:
    app = App()
    listener = _listener(app, cap=2_000, factory=Counted)
    for _ in range(2_000):
        _connect(listener, app, HALF_SENT, since=0.0)
    Counted.looks = 0
    for _ in range(100):  # 100 accepts at the cap with none idle
        assert listener._an_idle_one(None, take=False) is None
    assert Counted.looks <= 2_000  # each connection looked at once in all (was 100 x 2,000)


def test_an_idle_connection_is_found_among_busy_ones_and_taken_once() -> None:
    app = App()
    listener = _listener(app, cap=1_000)
    for _ in range(999):
        _connect(listener, app, HALF_SENT, since=0.0)
    answered = _connect(listener, app, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in b"".join(answered.transport.written)  # type: ignore[union-attr]
    assert listener._an_idle_one(None, take=False) is answered  # a look leaves it a candidate
    assert listener._an_idle_one(None) is answered
    assert listener._an_idle_one(None) is None  # taken: to be closed, not offered twice
    answered.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")  # idle again after its next answer
    assert listener._an_idle_one(None) is answered


def test_a_silent_connection_makes_room_only_after_its_grace() -> None:
    app = App()
    listener = _listener(app, cap=10)
    spoke = _connect(listener, app, since=app.clock - 2 * SILENT_GRACE)
    spoke.data_received(HALF_SENT)
    silent = _connect(listener, app, since=app.clock - 2 * SILENT_GRACE)
    young = _connect(listener, app)
    assert listener._an_idle_one(None) is silent  # the one that spoke is passed over
    assert listener._an_idle_one(None) is None  # the young one is given its grace
    app.clock += 2 * SILENT_GRACE
    assert listener._an_idle_one(None) is young


def test_a_closed_connection_is_no_candidate() -> None:
    app = App()
    listener = _listener(app, cap=10)
    conn = _connect(listener, app, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.connection_lost(None)
    assert conn not in listener.rested and conn not in listener.silent
    assert listener._an_idle_one(None) is None
