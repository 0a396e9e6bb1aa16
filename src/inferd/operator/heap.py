"""The serving process's heap: what it built to get going is moved out of the garbage collector's way.

A full collection walks every container object the process holds: the imported modules, the
configs and schemas of each deployment, the engine's and the gateway's state. In the gateway's
process that took tens of milliseconds, and every request arriving meanwhile waited: under a
100% shadow with payload records (many short-lived dicts, so frequent collections) the slowest
request of a 14-second wrk run at 1 connection took 58 ms. With ``settle`` after start-up, 10-11 ms
(p99 6.3-7.0 ms before, 4.6-4.7 ms after; p50 unchanged; measured with `inferd serve`).
"""

from __future__ import annotations

import gc
import math
import time

# How often at most a deploy's collection also thaws what earlier ones froze: a thawed, full
# collection of an operator with 6 APIs (about 51,000 objects) held its event loop, and so the
# gateway, 29-150 ms on a busy 2-core machine, against 0.2-0.4 ms for one that leaves the frozen
# objects alone (time.perf_counter around settle in a real operator).
THAW_EVERY = 600.0
_last_thaw = -math.inf


def settle() -> None:
    """Collect once, then leave every object alive now out of later collections (``gc.freeze``).

    Called once serving has started and after each deploy, not per request: the collection here
    is a full one. At most every ``THAW_EVERY`` seconds, what earlier calls froze is thawed first,
    so the collection also frees what was alive then and died since in a reference cycle (a
    request's or a connection's objects at the time of a deploy, an old version's): never
    thawed, they were never freed, and an operator grew by them at each deploy.
    """
    global _last_thaw
    now = time.monotonic()
    if now - _last_thaw >= THAW_EVERY:
        gc.unfreeze()
        _last_thaw = now
    gc.collect()
    gc.freeze()
