"""Desired vs actual replicas -> actions. Pure: the engine applies the plan.

Rolling updates keep the old version serving until the new one has as many ready replicas as
desired; then the old replicas are retired (each finishes the request it is running). Replicas
of an old version that never became ready are retired at once, unless no replica is ready and
the new version has its room (an old one restarting after a crash serves if the new one fails),
or the new version has failed (an old one replacing one that died keeps the API's count).
New replicas start only in free capacity: when the machine has no room for the next one, one
old replica is retired (once the others can carry its traffic), and the new one starts in the
room it leaves; one at a time.

A replica of the version that runs at a shadow's lower CPU priority, which the engine may not raise
back (``kept_low``: engine/priority.py), is replaced by a fresh one in free room only: it serves
until that one is ready, and is never retired to make room (it serves at a lower priority; gone,
the API would serve nothing while its replacement loads).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaView:
    """What the planner needs to know of one replica."""

    id: str
    version: str
    ready: bool
    kept_low: bool = False  # at a shadow's lower priority: replaced once a fresh one is ready


@dataclass
class Plan:
    start: int = 0
    retire: list[str] = field(default_factory=list)
    made_room: bool = False  # an old replica was retired to make room for a new one


def plan(
    desired: int,
    version: str,
    replicas: list[ReplicaView],
    can_start: int,
    draining: int = 0,
    blocked: bool = False,
    failed: bool = False,
) -> Plan:
    """Actions for one API: how many replicas of ``version`` to start, which to retire.

    ``can_start`` is how many more replicas this machine has room for; ``draining`` how many
    of this API's retired replicas are still finishing (their room comes back when they exit).
    ``blocked``: ``version`` cannot start now for a reason other than room (it failed to
    prepare, or waits out a crash back-off), so no old replica is retired to make room.
    ``failed``: ``version`` failed to load; the old version serves until another is deployed,
    so its replicas still starting (replacing ones that died) stay.
    """
    current = [r for r in replicas if r.version == version and not r.kept_low]
    old = [r for r in replicas if r.version != version]
    low = [r for r in replicas if r.version == version and r.kept_low]
    result = Plan(start=max(0, min(desired - len(current), can_start)))
    ready_current = sum(r.ready for r in current)
    old_ready = [r for r in old if r.ready]
    # An old replica still starting goes at once, unless it is all the API may soon serve with
    # (nothing is ready: the new version is loading or failing) and the new one has its room.
    serving = ready_current > 0 or bool(old_ready)
    needs_room = not blocked and len(current) + result.start < desired
    if (serving or needs_room or desired == 0) and not (failed and desired > 0):
        result.retire.extend(r.id for r in old if not r.ready)
    if ready_current >= desired or not old_ready:
        result.retire.extend(r.id for r in old_ready)
    elif (
        not blocked
        and result.start == 0
        and len(current) < desired
        and draining == 0
        and all(r.ready for r in current)
        and (len(old_ready) + ready_current >= 2 or ready_current == 0)
    ):
        # No room for the next new replica: make some by retiring one old one. With two or
        # more ready replicas the rest carry the traffic; with one, requests wait in the queue.
        result.retire.append(old_ready[-1].id)
        result.made_room = True
    # Kept-low replicas go as fresh ones are ready to carry their part (those still starting first).
    surplus = len(low) if desired == 0 else max(0, ready_current + len(low) - desired)
    order = [r for r in low if not r.ready] + [r for r in low if r.ready]
    result.retire.extend(r.id for r in order[:surplus])
    extra = len(current) - desired
    if extra > 0:
        # Retire replicas still starting first, then the newest ready ones.
        order = [r for r in reversed(current) if not r.ready] + [r for r in reversed(current) if r.ready]
        result.retire.extend(r.id for r in order[:extra])
    return result
