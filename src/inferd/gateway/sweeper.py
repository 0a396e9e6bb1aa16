"""The gateway's tick: ten times a second it advances the coarse clock that connections read
(no clock call per request), answers 504 for requests past their API's timeout, and once a second
finds the connections past an edge timeout (``edge.sweep``), closed a few per tick, and those
silent long enough not to count as clients (``edge.dormant``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from time import perf_counter
from typing import TYPE_CHECKING

from inferd.gateway import edge, held, wire
from inferd.gateway.queue import ApiQueue
from inferd.gateway.reader import BODY

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.lifecycle import GatewayLifecycle

log = logging.getLogger("inferd.gateway")

EXPIRE_SECONDS = 0.1
SWEEP_EVERY = 10  # ticks: connection timeouts are checked once a second


async def tick_forever(gateway: GatewayLifecycle) -> None:
    """Answer 504 for requests past their API's timeout, ten times a second; close idle clients
    (the gateway's own, and those of the servers it sweeps too: ``Gateway.sweep_also``)."""
    tick = 0
    expired: list[HttpConnection] = []  # found past a timeout, not closed yet
    while True:
        await asyncio.sleep(EXPIRE_SECONDS)
        clock = gateway.clock = time.monotonic()
        wire.date = wire.date_line()
        for app in gateway.neighbours:
            app.clock = clock
        tick += 1
        if tick % SWEEP_EVERY == 0:
            # idle clients out of the spinning's count (gateway/queue.py)
            ApiQueue.dormant = edge.dormant(gateway.connections, clock)
            if not expired:
                expired = edge.sweep(gateway.connections, gateway.limits, clock)
                for app in gateway.neighbours:
                    expired += edge.sweep(app.connections, gateway.limits, clock)
        if expired:
            closing, expired = expired[: edge.CLOSES_PER_TICK], expired[edge.CLOSES_PER_TICK :]
            for conn in closing:
                transport = conn.transport
                if transport is None:
                    continue
                if conn.write_paused:
                    # A stalled reader: a graceful close waits for it to read the unsent
                    # answer, for ever; its socket and buffer would stay as long as it liked.
                    held.reset(transport)
                elif conn.phase == BODY and not (conn.lingering or conn.broken):
                    conn.body_too_slow()  # a 408, then the close (once it has lingered)
                else:
                    transport.close()
        now = perf_counter()
        for queue in [*gateway.apis.values(), *gateway.removed]:
            try:
                queue.expire(now)
            except Exception:  # never let one API stop the sweep
                log.exception("expiring requests of api '%s' failed", queue.name)
        if gateway.removed:
            gateway.removed = [queue for queue in gateway.removed if queue.busy]
