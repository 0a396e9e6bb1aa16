"""Desired vs actual replicas -> actions. Pure: the engine applies the plan.

Rolling updates keep the old version serving until the new one has as many ready replicas as
desired; then the old replicas are retired (each finishes the request it is running). Replicas
of an old version that never became ready are retired at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaView:
    """What the planner needs to know of one replica."""

    id: str
    version: str
    ready: bool


@dataclass
class Plan:
    start: int = 0
    retire: list[str] = field(default_factory=list)


def plan(desired: int, version: str, replicas: list[ReplicaView], can_start: int) -> Plan:
    """Actions for one API: how many replicas of ``version`` to start, which to retire.

    ``can_start`` is how many more replicas this machine has room for.
    """
    current = [r for r in replicas if r.version == version]
    old = [r for r in replicas if r.version != version]
    result = Plan(start=max(0, min(desired - len(current), can_start)))
    ready_current = sum(r.ready for r in current)
    old_ready = [r for r in old if r.ready]
    result.retire.extend(r.id for r in old if not r.ready)
    if ready_current >= desired or not old_ready:
        result.retire.extend(r.id for r in old_ready)
    extra = len(current) - desired
    if extra > 0:
        # Retire replicas still starting first, then the newest ready ones.
        order = [r for r in reversed(current) if not r.ready] + [r for r in reversed(current) if r.ready]
        result.retire.extend(r.id for r in order[:extra])
    return result
