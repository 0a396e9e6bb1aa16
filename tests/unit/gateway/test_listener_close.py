"""A closed listener stays closed: the connections it leaves open, closing afterwards, do not
start it again (was: each one's close resumed it, and the resumed start failed on the closed
sockets: an exception on the event loop at every dashboard or admin API stop)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from inferd.gateway.http import HttpConnection
from inferd.gateway.server import HttpServer
from inferd.gateway.wire import Request


class App(HttpServer):
    def __init__(self) -> None:
        self.connections: set[HttpConnection] = set()

    def handle(self, conn: HttpConnection, request: Request) -> None:
        conn.respond(200, b"{}")

    def finished(self, *args: Any, **kwargs: Any) -> bytes:
        return b""


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _stop_with_a_connection_open() -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    app = App()
    port = await app.listen("the test server", "127.0.0.1", 0, lambda: HttpConnection(app))
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await until(lambda: app.connections, "the accept")
        app.stop_listening()
        for conn in list(app.connections):
            if conn.transport is not None:
                conn.transport.close()
        await until(lambda: not app.connections, "the close")
        for _ in range(20):  # let a resumed start run, if one was made
            await asyncio.sleep(0)
        assert app.listener is not None
        assert app.listener.paused, "a closed listener was resumed"
    finally:
        writer.close()
    gc.collect()  # a failed task nobody awaited reports here
    return errors


def test_a_closed_listener_is_not_resumed_by_its_connections_closing() -> None:
    assert asyncio.run(_stop_with_a_connection_open()) == []
