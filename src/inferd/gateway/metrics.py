"""Per-API request statistics kept by the gateway, cheap enough for the hot path.

A request costs one list append here. The pending records are folded into counters and
histograms in bulk (numpy, every ~1,000 requests or when a reader asks), so readers (``inferd
get``, Prometheus, the dashboard) always see exact totals while serving stays fast.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

# Upper bounds (seconds) of the latency histogram buckets, Prometheus-style.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGES = ("queue", "pre_inference", "model", "post_inference")
RECENT = 4096
RATE_WINDOW = 10.0  # seconds: requests/s is over this recent window, so it falls to 0 when idle
MAX_CLASSES = 1000
FLUSH_EVERY = 1024
# The fixed part of a replica's reply metadata (inferd.replica.messages.META).
META_DTYPE = np.dtype(
    [("pre", ">f8"), ("model", ">f8"), ("post", ">f8"), ("batch", ">u2"), ("header", ">u4")]
)

Record = tuple[str, int, float, float, float, bytes]  # protocol, status, now, latency, queue wait, meta
# The protocol label of the shadow copies an API answered (gateway/shadow.py). They are counted
# by status (``inferd_requests_total{protocol="shadow"}``) and their replica's stages are timed,
# but a copy is no client's request: its latency (held to leave in a group, then queued behind
# the API's own requests) stays out of the latency, the queue stage and requests/s, and ``inferd
# get`` counts copies apart from the 2XX / 4XX / 5XX of the clients' requests.
SHADOW = "shadow"


def nearest_rank(ordered: list[float], percent: int) -> float:
    """The ``percent``-th percentile of sorted values, by nearest rank (no interpolation): the
    smallest value that at least ``percent``% of the values are not above."""
    return ordered[max(0, -(-len(ordered) * percent // 100) - 1)]


@dataclass
class Histogram:
    """Bucket counts (not cumulative), sum and count of observations."""

    bounds: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def add(self, values: np.ndarray[Any, Any]) -> None:
        """Observe many values at once."""
        if not len(values):
            return
        found = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        self.counts = [a + int(b) for a, b in zip(self.counts, found, strict=True)]
        self.total += float(values.sum())
        self.count += len(values)


@dataclass
class Tracker:
    """Prediction monitoring: class counts, or min/max/sum of a regression value."""

    classes: dict[str, int] = field(default_factory=dict)
    other: int = 0  # predictions of classes past the first MAX_CLASSES (a total only)
    minimum: float | None = None
    maximum: float | None = None
    total: float = 0.0
    count: int = 0

    def add(self, model_type: str, raw: list[bytes]) -> None:
        """Record tracked values, each the JSON its replica sent."""
        if model_type == "classification":
            for value, count in Counter(raw).items():
                key = _class_of(value)
                if key in self.classes or len(self.classes) < MAX_CLASSES:
                    self.classes[key] = self.classes.get(key, 0) + count
                else:
                    self.other += count
        elif model_type == "regression":
            numbers = [
                float(v)
                for v in orjson.loads(b"[" + b",".join(raw) + b"]")
                if isinstance(v, int | float) and not isinstance(v, bool)
            ]
            if numbers:
                low, high = min(numbers), max(numbers)
                self.minimum = low if self.minimum is None else min(self.minimum, low)
                self.maximum = high if self.maximum is None else max(self.maximum, high)
                self.total += sum(numbers)
                self.count += len(numbers)


def _class_of(value: bytes) -> str:
    """A tracked class (its JSON) as text. A lone surrogate in it (JSON's ``"\\ud800"``: a
    client's label, echoed), which orjson refuses, is read by Python's ``json`` and kept as its
    escape: it failed the scrape of /metrics that folded it in, and the classes after it in that
    batch were never counted."""
    try:
        return str(orjson.loads(value))
    except orjson.JSONDecodeError:
        return str(json.loads(value)).encode("utf-8", "backslashreplace").decode()


class ApiStats:
    """Everything counted about one API since the gateway started."""

    def __init__(self, tracker_type: str = "") -> None:
        self.tracker_type = tracker_type
        self._tracking: tuple[str, str | None] = (tracker_type, None)  # model_type, key
        self._pending: list[Record] = []
        self._by_status: dict[tuple[str, int], int] = {}  # (protocol, HTTP status) -> count
        self._latency = Histogram()
        self._stages = {stage: Histogram() for stage in STAGES}
        self._recent: deque[tuple[float, float]] = deque(maxlen=RECENT)  # (perf_counter, latency)
        self._tracker = Tracker()
        self.started = time.perf_counter()
        # Streamed answers: how many, their items, time to the first item, whole duration.
        self.streams = 0
        self.stream_items = 0
        self.first_item = Histogram()
        self.stream_duration = Histogram()
        self._recent_first: deque[float] = deque(maxlen=RECENT)

    def track(self, model_type: str, key: str | None) -> None:
        """Monitor predictions as an API's (new) ``tracker`` says; another tracker than before
        starts counts of its own (old classes beside new values would read as one history)."""
        if (model_type, key) == self._tracking:
            return
        self.flush()  # what was answered before the change, counted as it was tracked then
        self._tracking = (model_type, key)
        self.tracker_type = model_type
        self._tracker = Tracker()

    def add_stream(self, first_item: float | None, items: int, duration: float) -> None:
        """One streamed answer ended (streams are few and long: counted at once)."""
        self.streams += 1
        self.stream_items += items
        self.stream_duration.add(np.array([duration]))
        if first_item is not None:
            self.first_item.add(np.array([first_item]))
            self._recent_first.append(first_item)

    def add(
        self, protocol: str, status: int, now: float, latency: float, queue_wait: float, meta: bytes
    ) -> None:
        """One answered request (the hot path: an append)."""
        pending = self._pending
        pending.append((protocol, status, now, latency, queue_wait, meta))
        if len(pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Fold the pending records into the counters and histograms."""
        batch = self._pending
        if not batch:
            return
        self._pending = []
        protocols, statuses, nows, latencies, waits, metas = zip(*batch, strict=True)
        for key, count in Counter(zip(protocols, statuses, strict=True)).items():
            self._by_status[key] = self._by_status.get(key, 0) + count
        clients = [protocol != SHADOW for protocol in protocols] if SHADOW in protocols else None
        if clients is not None:  # copies answered: not timed as clients' requests (see SHADOW)
            nows, latencies = (
                tuple(v for v, client in zip(column, clients, strict=True) if client)
                for column in (nows, latencies)
            )
        self._latency.add(np.array(latencies))
        self._recent.extend(zip(nows, latencies, strict=True))
        answered = [(wait, meta) for wait, meta in zip(waits, metas, strict=True) if meta]
        if not answered:
            return
        if clients is None:  # (a batch without copies, the usual one, pays nothing for them)
            queued = [wait for wait, _ in answered]
        else:
            queued = [
                wait for wait, meta, client in zip(waits, metas, clients, strict=True) if meta and client
            ]
        self._stages["queue"].add(np.array(queued))
        size = META_DTYPE.itemsize
        head = np.frombuffer(b"".join(meta[:size] for _, meta in answered), dtype=META_DTYPE)
        for stage, column in (("pre_inference", "pre"), ("model", "model"), ("post_inference", "post")):
            values = head[column].astype(np.float64)
            self._stages[stage].add(values[~np.isnan(values)])
        tracked = [meta[size:] for _, meta in answered if len(meta) > size]
        if tracked and self.tracker_type:
            self._tracker.add(self.tracker_type, tracked)

    @property
    def by_status(self) -> dict[tuple[str, int], int]:
        self.flush()
        return self._by_status

    @property
    def latency(self) -> Histogram:
        self.flush()
        return self._latency

    @property
    def stages(self) -> dict[str, Histogram]:
        self.flush()
        return self._stages

    @property
    def recent(self) -> deque[tuple[float, float]]:
        """(time.perf_counter() at the answer, latency in seconds) of the latest requests."""
        self.flush()
        return self._recent

    @property
    def tracker(self) -> Tracker:
        self.flush()
        return self._tracker

    def summary(self, window: float = 60.0) -> dict[str, Any]:
        """Status classes, latency (avg/p50/p99 ms over the last ``window`` s), requests/s.

        requests/s counts the answers of the last ``RATE_WINDOW`` seconds, so it reads 0 once
        traffic has stopped for that long.
        """
        classes = {"2XX": 0, "4XX": 0, "5XX": 0}
        copies = 0  # shadow copies answered, apart from the clients' requests
        for (protocol, status), count in self.by_status.items():
            key = f"{status // 100}XX"
            if protocol == SHADOW:
                copies += count
            elif key in classes:
                classes[key] += count
        now = time.perf_counter()
        recent = sorted(seconds for at, seconds in self.recent if now - at <= window)
        latency: dict[str, float | None] = {"avg_ms": None, "p50_ms": None, "p99_ms": None}
        if self.latency.count:
            latency["avg_ms"] = 1000 * self.latency.total / self.latency.count
        if recent:
            latency["p50_ms"] = 1000 * nearest_rank(recent, 50)
            latency["p99_ms"] = 1000 * nearest_rank(recent, 99)
        start = now - min(RATE_WINDOW, now - self.started)
        if len(self.recent) == RECENT:  # the buffer was cut: rate over the part of it in the window
            start = max(start, self.recent[0][0])
        answered = sum(1 for at, _ in self.recent if at >= start)
        rate = answered / max(1e-6, now - start) if answered else 0.0
        tracker: dict[str, Any] = {}
        if self.tracker.classes:
            tracker["classes"] = dict(sorted(self.tracker.classes.items()))
        if self.tracker.other:
            tracker["other"] = {"predictions": self.tracker.other, "classes_counted": MAX_CLASSES}
        if self.tracker.count:
            tracker["regression"] = {
                "min": self.tracker.minimum,
                "max": self.tracker.maximum,
                "avg": self.tracker.total / self.tracker.count,
                "count": self.tracker.count,
            }
        summary = {
            "requests": {**classes, "total": sum(self.by_status.values()) - copies, "shadow": copies},
            "latency": latency,
            "requests_per_second": rate,
            "tracker": tracker,
        }
        if self.streams:
            firsts = sorted(self._recent_first)
            summary["streams"] = {
                "count": self.streams,
                "items_per_stream": self.stream_items / self.streams,
                "first_item_p50_ms": 1000 * nearest_rank(firsts, 50) if firsts else None,
                "duration_avg_ms": 1000 * self.stream_duration.total / self.stream_duration.count,
            }
        return summary
