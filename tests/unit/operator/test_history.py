"""The dashboard's history: deltas between cumulative counters, percentiles, the ring buffer."""

from __future__ import annotations

import pytest

from inferd.operator.history import ApiHistory, History, class_totals, percentiles

REPLICAS = {"requested": 2, "available": 1, "up_to_date": 1, "failed": 0}


def totals(ok: int = 0, client: int = 0, server: int = 0) -> dict[str, int]:
    return {"2XX": ok, "4XX": client, "5XX": server}


def test_class_totals_add_up_protocols_and_statuses() -> None:
    by_status = {
        ("cortex", 200): 5,
        ("v2", 200): 2,
        ("cortex", 400): 3,
        ("cortex", 404): 1,
        ("cortex", 503): 4,
    }
    assert class_totals(by_status) == {"2XX": 7, "4XX": 4, "5XX": 4}
    assert class_totals({("cortex", 302): 1}) == {"2XX": 0, "4XX": 0, "5XX": 0}


def test_percentiles_in_milliseconds() -> None:
    assert percentiles([]) == (None, None)
    assert percentiles([0.002]) == (2.0, 2.0)
    p50, p99 = percentiles([i / 1000 for i in range(100, 0, -1)])  # 1..100 ms, unordered
    assert p50 == pytest.approx(50.0)  # nearest rank, as `inferd get` (was 51: the upper one)
    assert p99 == pytest.approx(99.0)  # (was 100: the slowest one)


def test_samples_hold_what_changed_since_the_previous_one() -> None:
    history = ApiHistory(size=10)
    first = history.observe(100.0, totals(4, 1), [0.001, 0.003], 2, REPLICAS, period=5.0)
    assert first.counts == {"2XX": 4, "4XX": 1, "5XX": 0}  # counters start at zero
    assert first.seconds == 5.0
    assert first.rate("2XX") == pytest.approx(0.8)
    assert (first.queue, first.replicas) == (2, REPLICAS)
    second = history.observe(110.0, totals(10, 1, 2), [], 0, REPLICAS, period=5.0)
    assert second.counts == {"2XX": 6, "4XX": 0, "5XX": 2}
    assert second.seconds == 10.0  # a late tick: the rate is over the real interval
    assert second.rate("2XX") == pytest.approx(0.6)
    assert (second.p50_ms, second.p99_ms) == (None, None)
    columns = history.columns()
    assert sum(columns["count_2XX"]) == 10
    assert sum(columns["count_5XX"]) == 2
    assert columns["t"] == [100.0, 110.0]
    assert columns["p50_ms"] == [1.0, None]  # of 1 and 3 ms: nearest rank
    assert columns["requested"] == [2, 2]
    assert columns["queue"] == [2, 0]


def test_counters_that_go_down_start_over() -> None:
    history = ApiHistory(size=10)
    history.observe(1.0, totals(50, 5), [], 0, REPLICAS, period=1.0)
    again = history.observe(2.0, totals(3), [], 0, REPLICAS, period=1.0)  # the API was recreated
    assert again.counts == {"2XX": 3, "4XX": 0, "5XX": 0}
    after = history.observe(3.0, totals(4, 1), [], 0, REPLICAS, period=1.0)
    assert after.counts == {"2XX": 1, "4XX": 1, "5XX": 0}


def test_the_ring_buffer_keeps_the_window() -> None:
    history = History(period=5.0, window=60.0)
    assert history.size == 12
    for tick in range(30):
        history.observe("api", 5.0 * tick, totals(tick), [], 0, REPLICAS)
    columns = history.columns("api")
    assert len(columns["t"]) == 12
    assert columns["t"][0] == 5.0 * 18
    assert columns["count_2XX"] == [1] * 12


def test_apis_come_and_go() -> None:
    history = History(period=1.0, window=10.0)
    history.observe("a", 1.0, totals(1), [], 0, REPLICAS)
    history.observe("b", 1.0, totals(2), [], 0, {"requested": 1})
    assert history.columns("b")["available"] == [0]  # missing replica counts are 0
    history.keep_only(["b"])
    assert set(history.apis) == {"b"}
    assert history.columns("a")["t"] == []  # unknown: an empty history, not an error
    with pytest.raises(ValueError):
        History(period=0)


def test_a_full_history_read_again_between_samples_costs_nearly_nothing() -> None:
    # Every open dashboard page reads every API's history each 2.5 s, in the event loop that also
    # runs the gateway: 140 APIs with 15 minutes of samples took 51 ms to lay out as columns and
    # 11 ms to encode, at each refresh (15 ms after a sample now, 1.3 ms until the next).
    import sys
    from types import FrameType
    from typing import Any

    import orjson

    history = History()
    names = [f"d/a{i}" for i in range(20)]
    for k in range(history.size):
        for name in names:
            history.observe(name, 1000.0 + 5 * k, totals(ok=3 * k), [0.0004], 0, REPLICAS)
    first = {name: history.columns_json(name) for name in names}
    assert orjson.loads(first["d/a3"]) == history.columns("d/a3")
    calls = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    def reading_all() -> dict[str, bytes]:
        sys.setprofile(count)
        try:
            return {name: history.columns_json(name) for name in names}
        finally:
            sys.setprofile(None)

    assert reading_all() == first
    assert calls / len(names) < 10, calls / len(names)
    # after a sample of every API, not every sample is laid out again (560 calls an API, each read)
    for name in names:
        history.observe(name, 1e6, totals(ok=10**6), [0.0004], 0, REPLICAS)
    calls = 0
    assert all(orjson.loads(read)["t"][-1] == 1e6 for read in reading_all().values())
    assert calls / len(names) < 100, calls / len(names)
    # a new sample is in the next read
    history.observe("d/a3", 2e6, totals(ok=2 * 10**6), [0.0004], 0, REPLICAS)
    assert orjson.loads(history.columns_json("d/a3"))["t"][-1] == 2e6
    assert orjson.loads(history.columns_json("d/a4"))["t"][-1] == 1e6


def test_class_totals_leave_out_shadow_copies() -> None:
    """The dashboard's request counts are the clients': copies the API answered as another's
    shadow are counted apart (``protocol="shadow"`` in /metrics)."""
    assert class_totals({("cortex", 200): 2, ("shadow", 200): 5, ("shadow", 503): 1}) == {
        "2XX": 2,
        "4XX": 0,
        "5XX": 0,
    }


def test_a_wall_clock_jump_changes_neither_rates_nor_the_charts_time_line() -> None:
    # The operator runs for months: NTP steps the clock, an admin sets it back, a VM resumes.
    # The interval a rate covers is the monotonic one; the earlier points move with the clock
    # (a clock set back an hour gave 6,000,000 req/s: 6 requests over the 1e-6 s floor, and
    # drew the 15 minutes before it an hour in the future, off the chart).
    history = History(period=5.0, window=60.0)
    history.observe("api", 1000.0, totals(0), [], 0, REPLICAS, clock=50.0)
    history.observe("api", 1005.0, totals(10), [], 0, REPLICAS, clock=55.0)
    back = history.observe("api", 1010.0 - 3600, totals(16), [], 0, REPLICAS, clock=60.0)
    assert back.seconds == 5.0
    assert back.rate("2XX") == pytest.approx(1.2)
    assert history.columns("api")["t"] == [1000.0 - 3600, 1005.0 - 3600, 1010.0 - 3600]
    ahead = history.observe("api", 1015.0 + 86400, totals(21), [], 0, REPLICAS, clock=65.0)
    assert ahead.seconds == 5.0  # a day forward: the rate was 5 requests over a day
    assert ahead.rate("2XX") == pytest.approx(1.0)
    assert history.columns("api")["t"] == [1000.0 + 86400, 1005.0 + 86400, 1010.0 + 86400, 1015.0 + 86400]
    assert history.columns("api")["seconds"] == [5.0, 5.0, 5.0, 5.0]
