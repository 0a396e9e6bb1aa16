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


def test_target_in_flight_divides_the_load() -> None:
    assert run(Autoscaler(2.0, 1.0, 10.0), [6] * 10, current=1)[-1] == 3


def test_scale_from_zero_at_the_first_request() -> None:
    scaler = Autoscaler(1.0, 5.0, 60.0)
    now = 10.0
    scaler.observe(now, 0)
    assert scaler.recommend(now, 0, 0, 2) == 0
    scaler.observe(now + 0.25, 1)
    assert scaler.recommend(now + 0.25, 0, 0, 2) == 1
