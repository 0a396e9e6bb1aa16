"""Rolling-update and scaling plans (pure logic)."""

from __future__ import annotations

from inferd.engine.reconcile import ReplicaView, plan


def replicas(*specs: tuple[str, str, bool]) -> list[ReplicaView]:
    return [ReplicaView(id, version, ready) for id, version, ready in specs]


def test_start_what_is_missing_within_the_room() -> None:
    assert plan(3, "v1", [], can_start=10).start == 3
    assert plan(3, "v1", [], can_start=2).start == 2
    assert plan(3, "v1", replicas(("a", "v1", True)), can_start=10).start == 2


def test_old_version_keeps_serving_until_the_new_one_is_ready() -> None:
    during = plan(
        2, "v2", replicas(("a", "v1", True), ("b", "v1", True), ("c", "v2", True), ("d", "v2", False)), 10
    )
    assert during.start == 0 and during.retire == []
    done = plan(
        2, "v2", replicas(("a", "v1", True), ("b", "v1", True), ("c", "v2", True), ("d", "v2", True)), 10
    )
    assert sorted(done.retire) == ["a", "b"]


def test_old_replicas_that_never_got_ready_go_at_once() -> None:
    result = plan(1, "v2", replicas(("a", "v1", False), ("b", "v1", True), ("c", "v2", False)), 10)
    assert result.retire == ["a"]


def test_an_old_replica_starting_while_nothing_is_ready_stays_unless_the_new_one_needs_its_room() -> None:
    # its version served; it restarts after a crash while the new version loads (or failed)
    restarting = replicas(("a", "v1", False), ("c", "v2", False))
    assert plan(1, "v2", restarting, can_start=10).retire == []
    assert plan(1, "v2", replicas(("a", "v1", False)), can_start=0, blocked=True).retire == []
    assert plan(1, "v2", replicas(("a", "v1", False)), can_start=0).retire == ["a"]  # its room
    assert plan(0, "v2", restarting, can_start=10).retire == ["a", "c"]
    assert plan(1, "v2", replicas(("a", "v1", False), ("c", "v2", True)), can_start=10).retire == ["a"]


def test_scale_down_retires_starting_replicas_first() -> None:
    result = plan(1, "v1", replicas(("a", "v1", True), ("b", "v1", True), ("c", "v1", False)), 10)
    assert result.retire == ["c", "b"]


def test_zero_desired_retires_everything() -> None:
    result = plan(0, "v1", replicas(("a", "v1", True), ("b", "v0", True)), 10)
    assert sorted(result.retire) == ["a", "b"]


def test_without_room_a_rollout_replaces_one_replica_at_a_time() -> None:
    old = replicas(("a", "v1", True), ("b", "v1", True))
    first = plan(2, "v2", old, can_start=0)
    assert first.start == 0 and first.retire == ["b"] and first.made_room  # room for a new replica
    # while "b" drains, nothing more is retired
    assert plan(2, "v2", old[:1], can_start=0, draining=1).retire == []
    # "b" gone: its room starts a new one; while it loads, nothing else moves
    second = plan(2, "v2", old[:1], can_start=1)
    assert second.start == 1 and second.retire == []
    loading = replicas(("a", "v1", True), ("c", "v2", False))
    assert plan(2, "v2", loading, can_start=0).retire == []
    # the new one is ready: the other two carry traffic, so the last old one makes room
    ready = replicas(("a", "v1", True), ("c", "v2", True))
    assert plan(2, "v2", ready, can_start=0).retire == ["a"]
    done = plan(2, "v2", replicas(("c", "v2", True), ("d", "v2", True)), can_start=0)
    assert done.start == 0 and done.retire == []


def test_a_single_replica_without_room_is_replaced_and_requests_wait() -> None:
    result = plan(1, "v2", replicas(("a", "v1", True)), can_start=0)
    assert result.retire == ["a"] and result.start == 0
    assert plan(1, "v2", [], can_start=1, draining=0).start == 1


def test_with_room_nothing_is_retired_early() -> None:
    result = plan(2, "v2", replicas(("a", "v1", True), ("b", "v1", True)), can_start=2)
    assert result.start == 2 and result.retire == []


def test_a_version_that_cannot_start_never_costs_the_old_ones_their_room() -> None:
    # The new version failed to prepare (requirements, model) or waits out a crash back-off:
    # the old replicas keep serving, however little room the machine has.
    for old in (replicas(("a", "v1", True)), replicas(("a", "v1", True), ("b", "v1", True))):
        result = plan(len(old), "v2", old, can_start=0, blocked=True)
        assert result.start == 0 and result.retire == [] and not result.made_room


def test_an_old_replica_replacing_a_dead_one_stays_while_the_new_version_has_failed() -> None:
    views = replicas(("a", "v1", True), ("b", "v1", False), ("c", "v2", False))
    assert "b" in plan(2, "v2", views, 10).retire  # the new version may still load: b is not needed
    assert "b" not in plan(2, "v2", views, 10, failed=True).retire
    assert "b" in plan(0, "v2", views, 10, failed=True).retire  # scaled to zero (or deleted)


def test_a_kept_low_replica_is_replaced_in_free_room_only_and_serves_until_then() -> None:
    # A replica at a shadow's lower priority that the engine may not raise back (engine/priority.py):
    # a fresh one starts where there is room, and it goes once that one is ready; on a full
    # machine it serves on (retired to make room, the API served nothing while its successor loaded).
    low = ReplicaView("a", "v1", True, kept_low=True)
    with_room = plan(1, "v1", [low], can_start=1)
    assert with_room.start == 1 and with_room.retire == []
    assert plan(1, "v1", [low, ReplicaView("b", "v1", False)], can_start=0).retire == []
    assert plan(1, "v1", [low, ReplicaView("b", "v1", True)], can_start=0).retire == ["a"]
    full = plan(1, "v1", [low], can_start=0)
    assert full.start == 0 and full.retire == [] and not full.made_room
    assert plan(0, "v1", [low], can_start=0).retire == ["a"]  # scaled to zero (or deleted)
