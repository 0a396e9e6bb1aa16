"""Where an API's next replica fits: the room the machine has left once every API is counted.

Every replica process still running holds its ``compute`` (old versions' and draining ones
too), and the room another API's rollout freed for its new replicas is reserved for it, so no
other API's autoscaler can take it (that rollout would be left with no replica at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from inferd.engine.capacity import Capacity, Need
from inferd.engine.gpus import gpu_need
from inferd.engine.state import ApiState, gpu_claims


def held(apis: Mapping[str, ApiState], owner: ApiState | None = None) -> list[Need]:
    """What running replicas hold, and the room APIs other than ``owner`` have reserved."""
    used: list[Need] = []
    for other in apis.values():
        compute = other.config.api.compute
        # every replica still running holds its room: old versions' and draining ones too
        count = len(other.replicas) + (other.reserved if other is not owner else 0)
        used.extend([(compute.cpu_cores, compute.mem_bytes)] * count)
    return used


def room(capacity: Capacity, apis: Mapping[str, ApiState], state: ApiState) -> int:
    """How many more replicas of ``state``'s API fit now."""
    compute = state.config.api.compute
    return capacity.room(
        held(apis, state), compute.cpu_cores, compute.mem_bytes, gpu_need(compute), gpu_claims(apis)
    )


def shortfall(capacity: Capacity, apis: Mapping[str, ApiState], state: ApiState) -> str:
    """Why one more replica of ``state``'s API does not fit, in words."""
    compute = state.config.api.compute
    return capacity.shortfall(
        held(apis, state), compute.cpu_cores, compute.mem_bytes, gpu_need(compute), gpu_claims(apis)
    )


def freeing(apis: Mapping[str, ApiState]) -> bool:
    """Whether replicas that are going away (draining, or of a deleted API) still hold room: an
    API that does not fit waits for it rather than being ``compute unavailable``."""
    return any(
        (other.deleting and bool(other.replicas)) or any(r.retired for r in other.replicas)
        for other in apis.values()
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
