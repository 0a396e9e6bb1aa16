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


def settle() -> None:
    """Collect once, then leave every object alive now out of later collections (``gc.freeze``).

    Called once serving has started and after each deploy, not per request: the collection here
    is a full one. What an earlier call froze is thawed first, so this collection also frees what
    was alive then and died since in a reference cycle (a request's or a connection's objects
    at the time of a deploy, an old version's): frozen, they were never freed, and an operator
    grew by them at each deploy.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
