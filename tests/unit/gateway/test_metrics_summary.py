"""What `inferd get API`, the dashboard and /metrics read from ApiStats: percentiles, tracker."""

from __future__ import annotations

import time

from inferd.gateway.metrics import MAX_CLASSES, ApiStats
from inferd.replica.messages import pack_meta


def answered(stats: ApiStats, latencies: list[float], tracked: list[bytes] | None = None) -> None:
    now = time.perf_counter()
    for n, latency in enumerate(latencies):
        meta = pack_meta({"model": 0.0001}, tracked[n] if tracked else b"")
        stats.add("cortex", 200, now, latency, 0.0, meta)


def test_percentiles_are_nearest_rank() -> None:
    """p50 of 1 ms and 100 ms read 100 ms (the upper one), and p99 of 100 answers was the
    slowest one, not the 99th: the index was n * q, not the nearest rank ceil(n * q) - 1."""
    stats = ApiStats()
    answered(stats, [0.001, 0.100])
    latency = stats.summary()["latency"]
    assert latency["p50_ms"] == 1.0 and latency["p99_ms"] == 100.0
    stats = ApiStats()
    answered(stats, [n / 1000 for n in range(1, 101)])  # 1 .. 100 ms
    latency = stats.summary()["latency"]
    assert round(latency["p50_ms"], 6) == 50.0 and round(latency["p99_ms"], 6) == 99.0
    stats = ApiStats()
    answered(stats, [0.005])
    latency = stats.summary()["latency"]
    assert latency["p50_ms"] == latency["p99_ms"] == 5.0


def test_a_new_tracker_starts_its_own_counts() -> None:
    """An API redeployed with another tracker (classification to regression, another key) showed
    the old classes beside the new values, in `inferd get API` and /metrics, for good."""
    stats = ApiStats()
    stats.track("classification", None)
    answered(stats, [0.001] * 3, [b'"cat"', b'"cat"', b'"dog"'])
    assert stats.summary()["tracker"] == {"classes": {"cat": 2, "dog": 1}}
    stats.track("classification", None)  # the same tracker again (an update of the handler): kept
    assert stats.summary()["tracker"] == {"classes": {"cat": 2, "dog": 1}}
    stats.track("regression", None)
    answered(stats, [0.001] * 2, [b"4.5", b"1.5"])
    assert stats.summary()["tracker"] == {"regression": {"min": 1.5, "max": 4.5, "avg": 3.0, "count": 2}}
    stats.track("regression", "score")
    assert stats.summary()["tracker"] == {}
    stats.track("", None)  # no tracker
    answered(stats, [0.001], [b"2.0"])
    assert stats.summary()["tracker"] == {}
    assert stats.summary()["requests"]["2XX"] == 6  # the requests' own counts go on


def test_predictions_of_classes_past_the_limit_are_counted_as_a_total() -> None:
    """Past MAX_CLASSES distinct classes, the predictions of new ones vanished from every count,
    with nothing saying so: a model with more classes showed fewer predictions than it made."""
    stats = ApiStats()
    stats.track("classification", None)
    labels = [f'"c{n}"'.encode() for n in range(MAX_CLASSES + 5)] + [b'"c0"', b'"late"']
    answered(stats, [0.001] * len(labels), labels)
    tracker = stats.summary()["tracker"]
    assert len(tracker["classes"]) == MAX_CLASSES and tracker["classes"]["c0"] == 2
    assert tracker["other"] == {"predictions": 6, "classes_counted": MAX_CLASSES}
    assert sum(tracker["classes"].values()) + tracker["other"]["predictions"] == len(labels)


def test_shadow_copies_are_counted_apart_and_not_timed_as_client_requests() -> None:
    """An API that is another's shadow counted the copies it answered as its 2XX, and their
    latency (a wait behind its own requests) in its p50/p99, requests/s and queue stage."""
    stats = ApiStats()
    now = time.perf_counter()
    meta = pack_meta({"model": 0.0001}, b"")
    stats.add("cortex", 200, now, 0.001, 0.0, meta)
    stats.add("shadow", 200, now, 0.5, 0.4, meta)
    stats.add("shadow", 500, now, 0.5, 0.4, meta)
    summary = stats.summary()
    assert summary["requests"] == {"2XX": 1, "4XX": 0, "5XX": 0, "total": 1, "shadow": 2}
    assert summary["latency"] == {"avg_ms": 1.0, "p50_ms": 1.0, "p99_ms": 1.0}
    assert stats.latency.count == 1 and stats.stages["queue"].count == 1
    assert [latency for _, latency in stats.recent] == [0.001]  # what requests/s counts
    assert stats.stages["model"].count == 3  # the replica's work on a copy is timed
    assert stats.by_status == {("cortex", 200): 1, ("shadow", 200): 1, ("shadow", 500): 1}  # /metrics
