"""CPU priority of replicas: an API that is another's shadow yields the CPU to those clients wait on.

No client waits for a shadow's answers (gateway/shadow.py records them), so on a busy machine
the shadow's replicas, not the clients' requests, should be the ones waiting for a core. Their
processes run ``INFERD_SHADOW_NICE`` nice levels (default 10; 0 leaves them as they are) below
the rest of inferd's. A nice level matters only while processes compete for a core: then the
shadow gets less CPU, its queue fills, and copies are dropped and counted instead of slowing
clients down (README, "Shadow traffic", has the figures at saturation). The engine
sets it as the process starts, before it loads its model, so the threads the model starts
inherit it. Lowering a priority needs no privilege; raising it back (the API stopped being a
shadow) needs CAP_SYS_NICE, so without it the replicas keep the lower priority until they are
replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping

from inferd.config.schema import ApiConfig, SplitterConfig
from inferd.engine.state import ApiState, Replica

NICE_ENV = "INFERD_SHADOW_NICE"
DEFAULT_NICE = 10


def shadow_nice(base: int, environ: Mapping[str, str] = os.environ) -> int | None:
    """The nice value of shadow replicas when the other replicas run at ``base`` (None: the same)."""
    try:
        offset = max(0, int(environ.get(NICE_ENV, DEFAULT_NICE)))
    except ValueError:
        offset = DEFAULT_NICE
    return min(19, base + offset) if offset and base < 19 else None


def shadow_targets(apis: Iterable[ApiConfig], splitters: Iterable[SplitterConfig]) -> set[str]:
    """The keys (``deployment/api``) of the APIs that an API or a splitter copies requests to,
    but for those a splitter sends its clients' requests to (a weight above 0: a challenger
    promoted while it was the splitter's shadow serves every client of the splitter)."""
    targets = {f"{c.deployment}/{c.api.shadow.api}" for c in apis if c.api.shadow is not None}
    routed = set()
    for splitter in splitters:
        shadow = splitter.splitter.shadow
        if shadow is not None:
            targets.add(f"{splitter.deployment}/{shadow.api}")
        routed |= {f"{splitter.deployment}/{name}" for name, weight in splitter.weights.items() if weight > 0}
    return targets - routed


def set_nice(pid: int, nice: int) -> bool:
    """Give process ``pid`` the nice value ``nice``, every thread of it (Linux keeps a nice value
    per thread: a model's threads started before a later deploy made the API a shadow keep theirs
    otherwise); False when it is gone or may not be raised."""
    try:
        threads = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        threads = [pid]
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:
        return False
    for thread in threads:
        if thread != pid:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.setpriority(os.PRIO_PROCESS, thread, nice)
    return True


class Priorities:
    """The engine's replicas at the priority their API calls for, kept as deploys change shadows."""

    def __init__(self) -> None:
        self.base = os.getpriority(os.PRIO_PROCESS, 0)  # what replicas inherit from the engine
        self.shadow = shadow_nice(self.base)
        self.splitters: dict[str, tuple[SplitterConfig, ...]] = {}  # deployment -> its splitters
        self.targets: set[str] = set()  # keys of the APIs that get copies

    def update(
        self, deployment: str, splitters: tuple[SplitterConfig, ...], apis: Mapping[str, ApiState]
    ) -> None:
        """``deployment`` was deployed with ``splitters``: every running replica gets its priority."""
        self.splitters[deployment] = splitters
        self.refresh(apis)

    def refresh(self, apis: Mapping[str, ApiState]) -> None:
        """Every running replica gets the priority its API calls for now: an API being deleted
        copies to no shadow (it did while it drained, and after ``inferd delete`` until the next
        deploy: the shadow's new replicas started at the lower priority)."""
        every = [s for group in self.splitters.values() for s in group]
        self.targets = shadow_targets((state.config for state in apis.values() if not state.deleting), every)
        for state in apis.values():
            for replica in state.replicas:
                self.apply(state.key, replica)

    def apply(self, key: str, replica: Replica) -> None:
        """Give ``replica`` (of API ``key``) the priority its API calls for, if it has not got it."""
        wanted = self.shadow if key in self.targets else None
        if replica.nice == wanted:
            return
        if set_nice(replica.process.pid, self.base if wanted is None else wanted):
            replica.nice = wanted
