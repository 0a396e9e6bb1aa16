"""One API's step of the reconcile loop, decided: how many replicas it wants, which to start and
which to retire, and whether it is short of room (``compute unavailable``).

``engine/local.py`` carries the decision out (starting and stopping processes); the rules of a
rolling update are ``reconcile.plan``'s, where replicas fit is ``placement``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from inferd.engine import failures, placement
from inferd.engine.capacity import Capacity
from inferd.engine.reconcile import Plan, ReplicaView, plan
from inferd.engine.state import ApiState


def desired(
    state: ApiState,
    now: float,
    in_flight: int,
    arrived: bool,
    fixed: int | None,
    capacity: Capacity,
    apis: Mapping[str, ApiState],
    shadows: Set[str],
) -> int:
    """How many replicas the API wants now: none while it is deleted, ``fixed`` (``inferd serve
    --replicas``), else the autoscaler's count, a shadow's capped by what its primaries leave.
    ``arrived``: a request came since the last step (maybe answered already)."""
    compute = state.config.api.compute
    if state.deleting:
        return 0
    if fixed is not None:
        return fixed
    state.autoscaler.observe(now, in_flight, arrived)
    wanted = state.autoscaler.recommend(now, state.desired, compute.min_replicas, compute.max_replicas)
    if state.key in shadows:  # a shadow: the primaries' replicas come first
        ceiling = placement.shadow_ceiling(capacity, apis, state, shadows)
        wanted = min(wanted, max(compute.min_replicas, ceiling))
    return wanted


def step(
    state: ApiState,
    now: float,
    capacity: Capacity,
    apis: Mapping[str, ApiState],
    ledger: placement.Ledger | None = None,
) -> Plan:
    """What to start and retire for ``state.desired`` replicas of the API's version; sets
    ``state.unschedulable``, ``fit`` and ``reserved`` for the room that is short or held.
    ``ledger``: the tick's sums of ``apis`` (``placement.Ledger``), else they are added up here."""
    version = state.version
    blocked = version.spec is None or now < version.next_start
    # a kept-low replica (engine/priority.py) serves until a fresh one takes its place
    current = sum(r.version == version.id and not r.kept_low for r in state.replicas if not r.retired)
    # The room left adds up every API's replicas: asked only by an API that wants more than it
    # has (asked by each at every tick, 81 idle APIs kept 22% of a core busy doing nothing).
    room = 0 if blocked or current >= state.desired else placement.room(capacity, apis, state, ledger=ledger)
    views = [ReplicaView(r.id, r.version, r.ready, r.kept_low) for r in state.replicas if not r.retired]
    draining = sum(r.retired for r in state.replicas)
    replacing = any(r.version != version.id for r in state.replicas)
    # Not one replica of the new version would fit even with every old one gone: retiring
    # them would leave the API with none (it did), so the old version serves on.
    hopeless = (
        replacing
        and not blocked
        and state.desired > 0
        and current == 0
        and placement.room(capacity, apis, state, without_old=True, ledger=ledger) == 0
    )
    actions = plan(
        state.desired, version.id, views, room, draining, blocked or hopeless, failures.failed(version)
    )
    state.unschedulable = (
        version.spec is not None
        and current + actions.start < state.desired
        and (now >= version.next_start)
        and (hopeless or not replacing)  # a rollout making room one replica at a time
        and not any(r.kept_low and not r.retired for r in state.replicas)  # it serves meanwhile
        # replicas going away: wait for their room
        and not (placement.freeing(apis, state) if ledger is None else ledger.freeing(state))
    )
    state.fit = current + actions.start if state.unschedulable else None
    # While old replicas go, the room they free is this API's: another API's autoscaler
    # taking it would leave this one with no replica at all.
    old = sum(r.version != version.id for r in state.replicas)
    placed = current + actions.start
    state.reserved = 0 if state.deleting else min(old, max(0, state.desired - placed))
    return actions
