"""The autoscaler's decisions from in-flight samples (pure logic, simulated clock)."""

from __future__ import annotations

from inferd.engine.autoscale import Autoscaler


def run(
    scaler: Autoscaler, loads: list[int], current: int, lowest: int = 1, highest: int = 5, tick: float = 0.23
) -> list[int]:
    counts = []
    now = 100.0
    for load in loads:
        now += tick
        scaler.observe(now, load)
        current = scaler.recommend(now, current, lowest, highest)
        counts.append(current)
    return counts


def test_scales_up_to_the_load_within_the_upscale_window() -> None:
    counts = run(Autoscaler(1.0, 1.0, 10.0), [4] * 10, current=1)
    assert counts[-1] == 4
    assert counts[0] >= 2  # a burst is answered at once, not after a minute


def test_never_beyond_the_bounds() -> None:
    assert run(Autoscaler(1.0, 1.0, 10.0), [50] * 10, current=1, highest=3)[-1] == 3
    assert run(Autoscaler(1.0, 1.0, 2.0), [0] * 40, current=3, lowest=2)[-1] == 2


def test_scales_down_only_after_a_full_quiet_window() -> None:
    scaler = Autoscaler(1.0, 1.0, 4.0)
    busy = run(scaler, [3] * 20, current=1)
    assert busy[-1] == 3
    quiet = run(scaler, [0] * 40, current=3)
    assert quiet[:15] == [3] * 15  # 15 x 0.23 s < the 4 s window: still holding
    assert quiet[-1] == 1
    # An autoscaler that has just started (or forgot its samples) has less than a window of
    # history: it holds the replicas it found, busy ones included, until it has a full window.
    fresh = run(Autoscaler(1.0, 1.0, 4.0), [1] * 40, current=3)
    assert fresh[:15] == [3] * 15 and fresh[-1] == 1


def test_target_in_flight_divides_the_load() -> None:
    assert run(Autoscaler(2.0, 1.0, 10.0), [6] * 10, current=1)[-1] == 3
    # and the peak of the quiet window, scaling down: 2 in flight, 2 per replica, is one replica
    scaler = Autoscaler(2.0, 1.0, 4.0)
    assert run(scaler, [6] * 20, current=1)[-1] == 3
    assert run(scaler, [2] * 40, current=3)[-1] == 1


def test_scale_from_zero_at_the_first_request() -> None:
    scaler = Autoscaler(1.0, 5.0, 60.0)
    now = 10.0
    scaler.observe(now, 0)
    assert scaler.recommend(now, 0, 0, 2) == 0
    scaler.observe(now + 0.25, 1)
    assert scaler.recommend(now + 0.25, 0, 0, 2) == 1


class _Reference(Autoscaler):
    """The recommendation as it was computed before idle APIs took a short cut: every sample
    of both windows read at every tick."""

    def recommend(self, now: float, current: int, lowest: int, highest: int) -> int:
        import math

        recent = [count for at, count in self._samples if now - at <= self.up_window]
        if current == 0 and recent and recent[-1] > 0:
            return max(1, lowest)
        wanted = current
        if recent:
            up = math.ceil(sum(recent) / len(recent) / self.target)
            if up > current:
                wanted = up
        long = [count for at, count in self._samples if now - at <= self.down_window]
        watched = self._since is not None and now - self._since >= self.down_window
        if wanted == current and long and watched:
            down = math.ceil(max(long) / self.target)
            if down < current:
                wanted = down
        return max(lowest, min(highest, wanted))


def test_an_idle_api_is_not_read_sample_by_sample_and_decides_as_before() -> None:
    # Each reconcile tick (4 a second) read both windows of every API, a minute of samples: with
    # 158 APIs the operator spent 6% of a core idle, much of it here.
    import random
    from collections import deque

    reads = 0

    class Watched(deque[tuple[float, float]]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            nonlocal reads
            reads += 1
            return super().__iter__()

    scaler = Autoscaler(1.0, 5.0, 60.0)
    scaler._samples = Watched()
    run(scaler, [0] * 300, current=1, lowest=0)
    assert reads == 0
    # and every decision is the one all samples gave, busy, idle and between
    draw = random.Random(7)
    for _ in range(30):
        fast, slow = Autoscaler(1.0, 1.0, 4.0), _Reference(1.0, 1.0, 4.0)
        loads = [draw.choice([0, 0, 0, 1, 3]) if draw.random() < 0.3 else 0 for _ in range(120)]
        lowest = draw.choice([0, 1])
        assert run(fast, loads, current=1, lowest=lowest) == run(slow, loads, current=1, lowest=lowest)


def test_requests_between_looks_keep_one_replica_and_add_none() -> None:
    """Requests that came and went between two looks (none in flight at either) are not idle:
    an API that may scale to zero keeps one replica under them, and only one, whatever its
    ``target_in_flight``; once none come, it goes after a quiet window."""
    for target in (1.0, 0.25):
        scaler, now, current = Autoscaler(target, 1.0, 2.0), 100.0, 1
        for _ in range(100):  # 23 s of looks, every one after a request
            now += 0.23
            scaler.observe(now, 0, arrived=True)
            current = scaler.recommend(now, current, 0, 5)
            assert current == 1
        for _ in range(20):
            now += 0.23
            scaler.observe(now, 0)
            current = scaler.recommend(now, current, 0, 5)
        assert current == 0
