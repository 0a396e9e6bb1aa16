"""requests/s is over a recent window: it reads the traffic of now, and 0 once traffic stops."""

from __future__ import annotations

import time

import pytest

from inferd.gateway.metrics import RATE_WINDOW, RECENT, ApiStats


def answered(stats: ApiStats, times: list[float]) -> None:
    for at in times:
        stats.add("cortex", 200, at, 0.001, 0.0, b"")


def test_the_rate_is_zero_once_traffic_stopped() -> None:
    stats = ApiStats()
    stats.started -= 120
    now = time.perf_counter()
    answered(stats, [now - RATE_WINDOW - 5 + i / 1000 for i in range(RECENT)])  # a burst, then quiet
    summary = stats.summary()
    assert summary["requests_per_second"] == 0.0
    assert summary["requests"]["2XX"] == RECENT


def test_the_rate_counts_the_recent_window() -> None:
    stats = ApiStats()
    stats.started -= 120
    now = time.perf_counter()
    # 500 answers in the window's last 5 s: still in it if this process pauses before the summary
    answered(stats, [now - 5 + i * 0.01 for i in range(500)])
    answered(stats, [now - 30 + i * 0.01 for i in range(100)])  # older: outside the window
    assert stats.summary()["requests_per_second"] == pytest.approx(500 / RATE_WINDOW, rel=0.05)
    assert RATE_WINDOW == 10  # README: answers over the last 10 s


def test_a_full_buffer_rates_over_what_it_holds() -> None:
    stats = ApiStats()
    stats.started -= 120
    now = time.perf_counter()
    answered(stats, [now - 2 + i * 2 / (2 * RECENT) for i in range(2 * RECENT)])  # 2 * RECENT in 2 s
    rate = stats.summary()["requests_per_second"]
    late = time.perf_counter() - now  # the buffer's last second, seen this much later
    assert RECENT / (1 + late) * 0.99 <= rate <= RECENT * 1.01
