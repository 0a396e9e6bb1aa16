"""Where an API's next replica fits: the room the machine has left once every API is counted.

Every replica process still running holds its ``compute`` (old versions' and draining ones
too), and the room another API's rollout freed for its new replicas is reserved for it, so no
other API's autoscaler can take it (that rollout would be left with no replica at all).
"""

from __future__ import annotations

from collections.abc import Mapping

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
