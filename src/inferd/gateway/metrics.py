"""Per-API request statistics kept by the gateway, cheap enough for the hot path.

Updating costs a few list and dict operations per request (no locks, no label lookups);
readers (``inferd get``, Prometheus, the dashboard) derive rates, percentiles and histograms
when they ask.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Upper bounds (seconds) of the latency histogram buckets, Prometheus-style.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGES = ("queue", "pre_inference", "model", "post_inference")
RECENT = 4096
MAX_CLASSES = 1000


@dataclass
class Histogram:
    """Bucket counts (not cumulative), sum and count of observations."""

    bounds: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


@dataclass
class Tracker:
    """Prediction monitoring: class counts, or min/max/sum of a regression value."""

    classes: dict[str, int] = field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None
    total: float = 0.0
    count: int = 0

    def record(self, model_type: str, value: Any) -> None:
        if model_type == "classification":
            key = str(value)
            if key in self.classes or len(self.classes) < MAX_CLASSES:
                self.classes[key] = self.classes.get(key, 0) + 1
        elif model_type == "regression" and isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            self.minimum = number if self.minimum is None else min(self.minimum, number)
            self.maximum = number if self.maximum is None else max(self.maximum, number)
            self.total += number
            self.count += 1


class ApiStats:
    """Everything counted about one API since the gateway started."""

    def __init__(self) -> None:
        self.by_status: dict[tuple[str, int], int] = {}  # (protocol, HTTP status) -> count
        self.latency = Histogram()
        self.stages = {stage: Histogram() for stage in STAGES}
        self.recent: deque[tuple[float, float]] = deque(maxlen=RECENT)
        self.tracker = Tracker()
        self.started = time.monotonic()

    def record(self, protocol: str, status: int, seconds: float, now: float) -> None:
        """One answered request: its protocol, status and latency as the gateway saw it."""
        by_status = self.by_status
        key = (protocol, status)
        by_status[key] = by_status.get(key, 0) + 1
        self.latency.observe(seconds)
        self.recent.append((now, seconds))

    def record_stages(self, queue: float, pre: float, model: float, post: float) -> None:
        """Seconds spent in each stage of one request (NaN: the stage did not run)."""
        stages = self.stages
        stages["queue"].observe(queue)
        if pre == pre:  # NaN is not equal to itself
            stages["pre_inference"].observe(pre)
        if model == model:
            stages["model"].observe(model)
        if post == post:
            stages["post_inference"].observe(post)

    def summary(self, window: float = 60.0) -> dict[str, Any]:
        """Status classes, latency (avg/p50/p99 ms) and requests/s over the last ``window`` s."""
        classes = {"2XX": 0, "4XX": 0, "5XX": 0}
        for (_, status), count in self.by_status.items():
            key = f"{status // 100}XX"
            if key in classes:
                classes[key] += count
        now = time.monotonic()
        recent = sorted(seconds for at, seconds in self.recent if now - at <= window)
        latency: dict[str, float | None] = {"avg_ms": None, "p50_ms": None, "p99_ms": None}
        if self.latency.count:
            latency["avg_ms"] = 1000 * self.latency.total / self.latency.count
        if recent:
            latency["p50_ms"] = 1000 * recent[len(recent) // 2]
            latency["p99_ms"] = 1000 * recent[min(len(recent) - 1, int(len(recent) * 0.99))]
        if len(self.recent) == RECENT and recent:  # the buffer was cut: rate over what it holds
            oldest = next(at for at, _ in self.recent if now - at <= window)
            span = max(1e-6, now - oldest)
        else:
            span = max(1e-6, min(window, now - self.started))
        rate = len(recent) / span
        tracker: dict[str, Any] = {}
        if self.tracker.classes:
            tracker["classes"] = dict(sorted(self.tracker.classes.items()))
        if self.tracker.count:
            tracker["regression"] = {
                "min": self.tracker.minimum,
                "max": self.tracker.maximum,
                "avg": self.tracker.total / self.tracker.count,
                "count": self.tracker.count,
            }
        return {
            "requests": {**classes, "total": sum(self.by_status.values())},
            "latency": latency,
            "requests_per_second": rate,
            "tracker": tracker,
        }
