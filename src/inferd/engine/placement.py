"""Where an API's next replica fits: the room the machine has left once every API is counted.

Every replica process still running holds its ``compute`` (old versions' and draining ones
too), and the room another API's rollout freed for its new replicas is reserved for it, so no
other API's autoscaler can take it (that rollout would be left with no replica at all).

A tick of the control loop asks this of every API short of room: it adds the machine up once
(``Ledger``), as asking each API's ``held`` for each made a tick quadratic in the APIs, and
tells why an API is short (``report_shortfall``).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from inferd.engine.capacity import Capacity, Need
from inferd.engine.gpus import Claim, gpu_need
from inferd.engine.output import Events
from inferd.engine.state import ApiState, gpu_claims
from inferd.types import ReplicaSink


def held(
    apis: Mapping[str, ApiState], owner: ApiState | None = None, without_old: bool = False
) -> list[Need]:
    """What running replicas hold, and the room APIs other than ``owner`` have reserved
    (``without_old``: as if ``owner``'s replicas of older versions were gone, for what the
    machine holds once rollouts are done)."""
    used: list[Need] = []
    for other in apis.values():
        compute = other.config.api.compute
        # every replica still running holds its room: old versions' and draining ones too, each
        # its own version's (an update from cpu 100m to 900m counted the old ones at 900m)
        old = 0
        for replica in other.replicas:
            own = compute if replica.source is None else replica.source.config.api.compute
            if replica.version != other.version.id:
                old += 1
                if without_old and other is owner:
                    continue
            used.append((own.cpu_cores, own.mem_bytes))
        if other is not owner:
            # A rollout reserves the room its old replicas free; while they run, it is the room
            # counted above. Counted twice, five APIs rolling at once on a full machine each saw
            # no room even once its old replicas were gone, and none of them moved.
            reserved = max(0, other.reserved - old) if without_old else other.reserved
            used.extend([(compute.cpu_cores, compute.mem_bytes)] * reserved)
    return used


# What one API holds for the others: (cpu, mem) as they are, (cpu, mem) once their old replicas
# are gone; whether its replicas go away (1) or not (0), whether its rollout frees room.
_Share = tuple[float, int, float, int, int, int]
_NOTHING: _Share = (0.0, 0, 0.0, 0, 0, 0)


class Ledger:
    """What every API holds, added up once per tick of the control loop: ``held`` for one API is
    then the total less that API's own share, counted afresh (its replicas change in its step).

    ``refresh`` an API once its step is done; within a tick only an API's own step changes it
    (events and deploys come between ticks). Asking ``held`` of each API short of room made a
    tick quadratic: 90 APIs ``compute unavailable`` of 360 kept 36% of a core busy.
    """

    def __init__(self, apis: Mapping[str, ApiState]) -> None:
        self.apis = apis
        # Added up when first asked: in a tick of APIs at rest none asks, and it costs nothing.
        self._shares: dict[int, _Share] | None = None
        self._totals: list[float] = [0.0] * 6  # the shares, added up

    def _added_up(self) -> dict[int, _Share]:
        if self._shares is None:
            self._shares = {}
            for state in self.apis.values():
                self.refresh(state)
        return self._shares

    def refresh(self, state: ApiState) -> None:
        """Count ``state``'s API as it is now (not at all once it is gone from the APIs)."""
        if self._shares is None:
            return  # added up from the APIs as they are when first asked
        before = self._shares.pop(id(state), None)
        if before is not None:
            self._add(before, -1)
        if self.apis.get(state.key) is state:
            share = _share(state)
            self._shares[id(state)] = share
            self._add(share, 1)

    def _add(self, share: _Share, sign: int) -> None:
        for index, value in enumerate(share):
            self._totals[index] += sign * value

    def held(self, owner: ApiState, without_old: bool = False) -> list[Need]:
        """``held(apis, owner, without_old)``, added up: one need for all."""
        mine = self._added_up().get(id(owner), _NOTHING)
        at = 2 if without_old else 0
        cpu, mem = _replicas(owner, without_old)
        return [(self._totals[at] - mine[at] + cpu, int(self._totals[at + 1] - mine[at + 1]) + mem)]

    def freeing(self, owner: ApiState) -> bool:
        """``freeing(apis, owner)``, counted."""
        mine = self._added_up().get(id(owner), _NOTHING)
        going = self._totals[4] - mine[4] + _going(owner)
        return going > 0 or self._totals[5] - mine[5] > 0


def _replicas(state: ApiState, without_old: bool) -> tuple[float, int]:
    """What ``state``'s replicas hold (``without_old``: but those of older versions)."""
    compute = state.config.api.compute
    cpu, mem = 0.0, 0
    for replica in state.replicas:
        if without_old and replica.version != state.version.id:
            continue
        own = compute if replica.source is None else replica.source.config.api.compute
        cpu += own.cpu_cores
        mem += own.mem_bytes or 0
    return cpu, mem


def _share(state: ApiState) -> _Share:
    """What ``state``'s API holds for the other APIs (as ``held`` counts an API not its owner)."""
    cpu, mem = _replicas(state, without_old=False)
    old = sum(r.version != state.version.id for r in state.replicas)
    reserved, reserved_without_old = state.reserved, max(0, state.reserved - old)
    if reserved:
        compute = state.config.api.compute
        need_cpu, need_mem = compute.cpu_cores, compute.mem_bytes or 0
    else:
        need_cpu, need_mem = 0.0, 0
    return (
        cpu + need_cpu * reserved,
        mem + need_mem * reserved,
        cpu + need_cpu * reserved_without_old,
        mem + need_mem * reserved_without_old,
        int(_going(state)),
        int(_rolling(state)),
    )


def room(
    capacity: Capacity,
    apis: Mapping[str, ApiState],
    state: ApiState,
    without_old: bool = False,
    ledger: Ledger | None = None,
) -> int:
    """How many more replicas of ``state``'s API fit now (``without_old``: once its replicas of
    older versions are gone); ``ledger``: this tick's sums of ``apis``."""
    compute = state.config.api.compute
    gpu = gpu_need(compute)
    return capacity.room(
        held(apis, state, without_old) if ledger is None else ledger.held(state, without_old),
        compute.cpu_cores,
        compute.mem_bytes,
        gpu,
        _claims(apis, state, without_old) if gpu.count else (),
    )


def shortfall(
    capacity: Capacity, apis: Mapping[str, ApiState], state: ApiState, ledger: Ledger | None = None
) -> str:
    """Why one more replica of ``state``'s API does not fit, in words (its old versions' replicas
    left out: a rollout is short of room only when it would be once they are gone)."""
    compute = state.config.api.compute
    gpu = gpu_need(compute)
    return capacity.shortfall(
        held(apis, state, without_old=True) if ledger is None else ledger.held(state, without_old=True),
        compute.cpu_cores,
        compute.mem_bytes,
        gpu,
        _claims(apis, state, without_old=True) if gpu.count else (),
    )


def report_shortfall(
    state: ApiState,
    ledger: Ledger,
    capacity: Capacity,
    apis: Mapping[str, ApiState],
    sink: ReplicaSink,
    event: Events,
) -> None:
    """Tell the API's shortfall, once a tick: while ``compute unavailable`` with no replica running
    or starting, requests are refused at once with the reason (the gateway's API error); with one
    (fewer than ``min_replicas`` fit), they wait for it, and only ``inferd get`` says why."""
    reason = None
    unavailable = state.status == "compute unavailable"
    if unavailable or state.fit is not None:
        reason = shortfall(capacity, apis, state, ledger)
    if unavailable and reason and reason not in (state.compute_reason, state.cap_reason):
        event(state.key, f"compute unavailable: {reason}")
    if not unavailable or any(not r.retired for r in state.replicas):
        state.cap_reason, reason = reason, None  # capped, not stopped: said in ``get`` only
    if reason != state.compute_reason:
        state.compute_reason = reason
        sink.api_error(state.key, f"compute unavailable: {reason}" if reason else state.version.error)


def _claims(apis: Mapping[str, ApiState], owner: ApiState, without_old: bool) -> list[Claim]:
    """The devices replica processes hold (``without_old``: but those of ``owner``'s old versions)."""
    claims = gpu_claims(apis)
    if not without_old:
        return claims
    old = [replica.gpus for replica in owner.replicas if replica.version != owner.version.id]
    return [claim for claim in claims if not any(claim is gone for gone in old)]


def freeing(apis: Mapping[str, ApiState], owner: ApiState | None = None) -> bool:
    """Whether replicas that are going away (draining, of a deleted API, or of an older version
    that another API's rollout replaces) still hold room: ``owner``, if it does not fit, waits for
    it rather than being ``compute unavailable`` (two APIs of one deploy rolling on a full
    machine: the first whose old replicas were gone failed the deploy, live a second later)."""
    return any(_going(other) or (other is not owner and _rolling(other)) for other in apis.values())


def _going(state: ApiState) -> bool:
    """Whether replicas of ``state``'s API are going away: draining, or all of a deleted API."""
    return (state.deleting and bool(state.replicas)) or any(r.retired for r in state.replicas)


def _rolling(state: ApiState) -> bool:
    """An update under way whose old replicas go once the new version is ready (not one that
    failed, nor one that cannot fit: their old replicas stay)."""
    version = state.version
    return (
        version.error is None
        and not version.oom
        and state.status != "compute unavailable"
        and any(r.version != version.id for r in state.replicas)
    )


def shadow_ceiling(
    capacity: Capacity, apis: Mapping[str, ApiState], shadow: ApiState, shadows: Set[str]
) -> int:
    """The most replicas ``shadow`` (an API that gets copies of others' requests) may run: what fits
    once the APIs clients wait on have the replicas their autoscalers want.

    No client waits for a shadow's answers, so on a full machine the shadow gives way: a copy that
    finds no free shadow replica is dropped and counted, where a request of the primary's would
    have waited (or been refused) for want of the replica the shadow held.
    """
    used: list[Need] = []
    for other in apis.values():
        if other is shadow:
            continue
        count = len(other.replicas) + other.reserved
        if other.key not in shadows and not other.deleting:  # and the replicas it wants but lacks
            count += max(0, other.desired - sum(not r.retired for r in other.replicas))
        compute = other.config.api.compute
        used.extend([(compute.cpu_cores, compute.mem_bytes)] * count)
    compute = shadow.config.api.compute
    return capacity.room(used, compute.cpu_cores, compute.mem_bytes)
