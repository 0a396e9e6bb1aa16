"""Clients that keep a connection open without sending (a metrics scraper between scrapes) do not
count as clients when the gateway decides whether it is quiet enough to spin (gateway/queue.py):
``edge.dormant`` marks and counts them once a second, and a marked connection counts again as
soon as its next request starts, or stops counting at all once it closes. Real connections over
loopback; the sweep's clock is given, never waited for."""

from __future__ import annotations

import asyncio

import pytest

from inferd.gateway import edge
from inferd.gateway.http import HttpConnection
from inferd.gateway.queue import ApiQueue
from tests.unit.gateway.test_listener_close import App, until

REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


async def _answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    await reader.readexactly(2)  # {}


async def _scraper_and_client() -> list[tuple[str, int, int]]:
    seen: list[tuple[str, int, int]] = []
    app = App()
    port = await app.listen("the test server", "127.0.0.1", 0, lambda: HttpConnection(app))
    scraper = await asyncio.open_connection("127.0.0.1", port)
    client = await asyncio.open_connection("127.0.0.1", port)
    try:
        await until(lambda: len(app.connections) == 2, "the accepts")
        await _answered(*scraper)
        await _answered(*client)

        def sweep(now: float) -> None:
            ApiQueue.dormant = edge.dormant(app.connections, now)
            seen.append(("clients", len(app.connections) - ApiQueue.dormant, len(app.connections)))

        sweep(app.clock)  # both just answered (the gateway's clock, as its connections read it)
        sweep(app.clock + edge.DORMANT_SECONDS)  # both silent since: none
        await _answered(*scraper)  # a scrape: a client again until the next sweep
        seen.append(("after a request", len(app.connections) - ApiQueue.dormant, len(app.connections)))
        sweep(app.clock + edge.DORMANT_SECONDS)
        client[1].close()  # a dormant connection closes: neither open nor dormant
        await until(lambda: len(app.connections) == 1, "the close")
        seen.append(("after a close", len(app.connections) - ApiQueue.dormant, len(app.connections)))
    finally:
        for _, writer in (scraper, client):
            writer.close()
        app.stop_listening()
    return seen


def test_silent_keep_alive_connections_are_not_counted_as_clients_until_they_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ApiQueue, "dormant", 0)
    assert asyncio.run(_scraper_and_client()) == [
        ("clients", 2, 2),
        ("clients", 0, 2),
        ("after a request", 1, 2),
        ("clients", 0, 2),
        ("after a close", 0, 1),
    ]
