"""Where an API's next replica fits: the room the machine has left once every API is counted.

Every replica process still running holds its ``compute`` (old versions' and draining ones
too), and the room another API's rollout freed for its new replicas is reserved for it, so no
other API's autoscaler can take it (that rollout would be left with no replica at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from inferd.engine.capacity import Capacity, Need
from inferd.engine.gpus import Claim, gpu_need
from inferd.engine.state import ApiState, gpu_claims


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


def room(capacity: Capacity, apis: Mapping[str, ApiState], state: ApiState, without_old: bool = False) -> int:
    """How many more replicas of ``state``'s API fit now (``without_old``: once its replicas of
    older versions are gone)."""
    compute = state.config.api.compute
    return capacity.room(
        held(apis, state, without_old),
        compute.cpu_cores,
        compute.mem_bytes,
        gpu_need(compute),
        _claims(apis, state, without_old),
    )


def shortfall(capacity: Capacity, apis: Mapping[str, ApiState], state: ApiState) -> str:
    """Why one more replica of ``state``'s API does not fit, in words (its old versions' replicas
    left out: a rollout is short of room only when it would be once they are gone)."""
    compute = state.config.api.compute
    return capacity.shortfall(
        held(apis, state, without_old=True),
        compute.cpu_cores,
        compute.mem_bytes,
        gpu_need(compute),
        _claims(apis, state, without_old=True),
    )


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
    return any(
        (other.deleting and bool(other.replicas))
        or any(r.retired for r in other.replicas)
        or (other is not owner and _rolling(other))
        for other in apis.values()
    )


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
