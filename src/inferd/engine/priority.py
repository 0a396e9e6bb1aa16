"""CPU priority of replicas: an API that is another's shadow yields the CPU to those clients wait on.

No client waits for a shadow's answers (gateway/shadow.py records them), so on a busy machine
the shadow's replicas, not the clients' requests, should be the ones waiting for a core. Their
processes run ``INFERD_SHADOW_NICE`` nice levels (default 10; 0 leaves them as they are) below
the rest of inferd's. A nice level matters only while processes compete for a core: then the
shadow gets less CPU, its queue fills, and copies are dropped and counted instead of slowing
clients down (README, "Shadow traffic", has the figures at saturation). The engine
sets it as the process starts, before it loads its model, so the threads the model starts
inherit it. Lowering a priority needs no privilege; raising it back (the API stopped being a
shadow) needs CAP_SYS_NICE, so without it (a user's operator) each such replica is replaced, as in
a rolling update, by one started at inferd's own priority in free room (the engine does it:
``kept_low``; reconcile.py never retires one to make room, and one whose API is a shadow again keeps
its place).

A nice value alone is not enough where Linux groups processes by session (autogroups: on by
default, ``/proc/sys/kernel/sched_autogroup_enabled``, for processes in the root cpu cgroup):
the CPU is shared between the sessions' groups first, and a replica leads a session of its own
(replica/group.py), so its group got a core as often as the gateway's, whatever the nice value of
the one process in it (two busy loops on one core, each in its own session, one of them at nice
19: 50% each). The shadow's replicas' groups get the same nice value too (``/proc/PID/autogroup``;
then 89% and 11% at nice 0 and 10). That is done once the replica leads its session (a moment
after it starts), and again on each step of the engine until it is done (without CAP_SYS_ADMIN,
the kernel sets one group's nice value per 100 ms for the whole machine: a shadow's replicas get
theirs one a step, the others told EAGAIN).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from inferd.config.schema import ApiConfig, SplitterConfig
from inferd.engine.state import ApiState, Replica

NICE_ENV = "INFERD_SHADOW_NICE"
DEFAULT_NICE = 10
PROC = Path("/proc")  # where the kernel shows processes and their autogroups


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
        threads = [int(name) for name in os.listdir(PROC / str(pid) / "task")]
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


def _alive(pid: int) -> bool:
    try:
        os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return False
    return True


def group_nice_of(pid: int | str) -> int | None:
    """The nice value of the autogroup of process ``pid`` (``self`` for this one); None without
    one: on a kernel without autogroups, or for a process in the root group (the file reads empty
    for a process still in the session the machine started with, PID 1's, as a CI runner's was)."""
    try:
        return int((PROC / str(pid) / "autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def engine_group_nice(base: int) -> int | None:
    """The nice value that replicas' autogroups compete against, for a process at nice ``base``:
    its autogroup's; ``base`` itself in the root group, where its threads compete one by one with
    the replicas' groups at their own nice value; None on a kernel without autogroups."""
    own = group_nice_of("self")
    if own is None and (PROC / "self" / "autogroup").exists():
        return base
    return own


def set_group_nice(pid: int, nice: int) -> bool:
    """Give the autogroup of replica ``pid`` the nice value ``nice`` once ``pid`` leads a session
    of its own (before, its group is the one it was started in: the engine's); True when done or
    there is nothing to do (a kernel without autogroups), False to try again later."""
    process = PROC / str(pid)
    try:
        session = int((process / "stat").read_text().rpartition(")")[2].split()[3])
    except (OSError, ValueError, IndexError):
        return False  # gone (the engine reaps it and forgets it)
    group = process / "autogroup"
    if not group.exists():
        return True  # a kernel without autogroups (CONFIG_SCHED_AUTOGROUP off): the nice value does
    if session != pid:
        return False  # not yet the leader of its own session
    try:
        group.write_text(str(nice))
    except FileNotFoundError:
        return True  # gone since: nothing left to set
    except OSError:  # EAGAIN: another group's was set in the last 100 ms
        return False
    return True


class Priorities:
    """The engine's replicas at the priority their API calls for, kept as deploys change shadows."""

    def __init__(self) -> None:
        self.base = os.getpriority(os.PRIO_PROCESS, 0)  # what replicas inherit from the engine
        self.shadow = shadow_nice(self.base)
        # the nice value of the engine's autogroup, which its replicas' groups compete with
        self.group_base = engine_group_nice(self.base)
        self.group_shadow = None if self.group_base is None else shadow_nice(self.group_base)
        self.splitters: dict[str, tuple[SplitterConfig, ...]] = {}  # deployment -> its splitters
        self.targets: set[str] = set()  # keys of the APIs that get copies
        # replicas (with their API's key) whose nice value may not be raised back, for the engine
        # to replace
        self.kept_low: list[tuple[str, Replica]] = []

    def update(
        self, deployment: str, splitters: tuple[SplitterConfig, ...], apis: Mapping[str, ApiState]
    ) -> None:
        """``deployment`` was deployed with ``splitters``: every running replica gets its priority."""
        if splitters:
            self.splitters[deployment] = splitters
        else:  # none, or deleted: no entry kept per deployment name ever deployed
            self.splitters.pop(deployment, None)
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

    def settle(self, apis: Mapping[str, ApiState]) -> None:
        """Finish what ``apply`` could not do yet: the groups of replicas that had not led their
        sessions yet, or whose turn to be set had not come (each step of the engine)."""
        for state in apis.values():
            for replica in state.replicas:
                if replica.group_nice != self._group_wanted(state.key):
                    self.apply(state.key, replica)

    def apply(self, key: str, replica: Replica) -> None:
        """Give ``replica`` (of API ``key``) the priority its API calls for, if it has not got it."""
        wanted = self.shadow if key in self.targets else None
        if replica.kept_low and replica.nice == wanted:  # a shadow again: it has the priority it needs
            replica.kept_low = False
        if replica.nice != wanted and not replica.kept_low:
            if set_nice(replica.process.pid, self.base if wanted is None else wanted):
                replica.nice = wanted
            elif wanted is None and _alive(replica.process.pid):  # no CAP_SYS_NICE to raise it
                replica.kept_low = True
                self.kept_low.append((key, replica))
        group = self._group_wanted(key)
        if replica.group_nice == group or self.group_base is None:
            return
        if set_group_nice(replica.process.pid, self.group_base if group is None else group):
            replica.group_nice = group

    def _group_wanted(self, key: str) -> int | None:
        return self.group_shadow if key in self.targets else None
