"""Per-API history for the dashboard: a ring buffer of samples over the last 15 minutes.

The gateway keeps only cumulative counters (``ApiStats``) because that is what the hot path can
afford; the dashboard wants rates over time. So the operator samples every few seconds and
stores what changed since the previous sample, in memory: no time-series database, bounded
size (window / period points per API), and nothing here reads a clock or does I/O, so every
rule is unit-tested with made-up numbers. Each sample comes with two times: the wall clock's (the
charts' axis) and a monotonic one (the interval its rates cover: the boot clock, which counts the
time a machine was suspended, as the wall clock does). When the wall clock jumps (NTP steps it, an
admin sets it, a VM resumes), the interval stays the monotonic one and the earlier points move
with the clock, so the charts keep their last 15 minutes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from inferd.gateway.metrics import SHADOW, nearest_rank

CLASSES = ("2XX", "4XX", "5XX")
REPLICA_FIELDS = ("requested", "available", "up_to_date", "failed")
WINDOW = 15 * 60.0
PERIOD = 5.0
# How far the wall clock may drift from the monotonic one between two samples before the earlier
# samples' times are moved by the difference (NTP slews a clock by at most 0.5 ms a second).
JUMP = 1.0


def class_totals(by_status: Mapping[tuple[str, int], int]) -> dict[str, int]:
    """Cumulative request counts per status class from ``ApiStats.by_status`` (protocol, status):
    the clients' requests, not the shadow copies the API answered."""
    totals = dict.fromkeys(CLASSES, 0)
    for (protocol, status), count in by_status.items():
        key = f"{status // 100}XX"
        if key in totals and protocol != SHADOW:
            totals[key] += count
    return totals


def percentiles(latencies: Iterable[float]) -> tuple[float | None, float | None]:
    """p50 and p99 in milliseconds, chosen as ``ApiStats.summary`` does (no interpolation)."""
    ordered = sorted(latencies)
    if not ordered:
        return None, None
    return 1000 * nearest_rank(ordered, 50), 1000 * nearest_rank(ordered, 99)


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of one API's history: what happened between the previous sample and ``at``."""

    at: float  # wall-clock seconds (epoch), for the charts' time axis
    seconds: float  # length of the interval the counts cover
    counts: dict[str, int]  # requests answered in the interval, by status class
    p50_ms: float | None
    p99_ms: float | None
    queue: int  # requests waiting for a replica at ``at``
    replicas: dict[str, int]  # requested / available / up_to_date / failed at ``at``

    def rate(self, status_class: str) -> float:
        return self.counts[status_class] / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ApiHistory:
    """The samples of one API, oldest first, at most ``size`` of them."""

    size: int
    samples: deque[Sample] = field(init=False)
    _totals: dict[str, int] = field(init=False)
    _last_at: float | None = field(init=False, default=None)
    _last_clock: float = field(init=False, default=0.0)
    # The charts' series, kept as the samples come (laid out afresh at each read, 140 APIs'
    # 15 minutes took 51 ms of the event loop), and encoded once per sample.
    _series: dict[str, deque[Any]] = field(init=False)
    _json: bytes | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.size)
        self._series = {key: deque(maxlen=self.size) for key in SERIES}
        # Counting starts at zero when the gateway creates an API's stats, so the first sample
        # holds every request answered before it: the history adds up to the API's totals.
        self._totals = dict.fromkeys(CLASSES, 0)

    def observe(
        self,
        at: float,
        totals: Mapping[str, int],
        latencies: Iterable[float],
        queue: int,
        replicas: Mapping[str, int],
        period: float,
        clock: float | None = None,
    ) -> Sample:
        """Add a sample from cumulative ``totals`` and the latencies (s) seen since the last one.

        ``at`` is the wall clock's time of the sample, ``clock`` a monotonic clock's (``at``
        when not given). Counters that went down mean the API's stats were recreated (deleted
        and deployed again): the new counters are then the whole delta.
        """
        clock = at if clock is None else clock
        reset = any(totals.get(key, 0) < self._totals[key] for key in CLASSES)
        counts = {key: totals.get(key, 0) - (0 if reset else self._totals[key]) for key in CLASSES}
        self._totals = {key: totals.get(key, 0) for key in CLASSES}
        if self._last_at is None:
            seconds = period
        else:
            seconds = max(clock - self._last_clock, 1e-6)
            jump = at - self._last_at - (clock - self._last_clock)
            if abs(jump) > JUMP:
                self._move(jump)
        self._last_at, self._last_clock = at, clock
        p50, p99 = percentiles(latencies)
        sample = Sample(
            at=at,
            seconds=seconds,
            counts=counts,
            p50_ms=p50,
            p99_ms=p99,
            queue=queue,
            replicas={key: int(replicas.get(key, 0)) for key in REPLICA_FIELDS},
        )
        self.samples.append(sample)
        for key, value in _points(sample):
            self._series[key].append(value)
        self._json = None
        return sample

    def _move(self, jump: float) -> None:
        """The wall clock jumped by ``jump`` seconds: the samples before it are that far away."""
        self.samples = deque(
            (replace(sample, at=sample.at + jump) for sample in self.samples), maxlen=self.size
        )
        self._series["t"] = deque((at + jump for at in self._series["t"]), maxlen=self.size)

    def columns_json(self) -> bytes:
        """``columns()`` as JSON, laid out once per sample: each open page reads every API's
        history at every refresh (140 APIs' 15 minutes took 62 ms of the event loop each time)."""
        if self._json is None:
            self._json = orjson.dumps(self.columns())
        return self._json

    def columns(self) -> dict[str, list[Any]]:
        """The samples as one list per series, for the page's charts (compact JSON)."""
        return {key: list(values) for key, values in self._series.items()}


def _points(sample: Sample) -> list[tuple[str, Any]]:
    """The sample's point in each series of ``ApiHistory.columns``."""
    points: list[tuple[str, Any]] = [("t", sample.at), ("seconds", sample.seconds)]
    for key in CLASSES:
        points += [(key, sample.rate(key)), (f"count_{key}", sample.counts[key])]
    points += [("p50_ms", sample.p50_ms), ("p99_ms", sample.p99_ms), ("queue", sample.queue)]
    points += [(key, sample.replicas[key]) for key in REPLICA_FIELDS]
    return points


SERIES = [
    key
    for key, _ in _points(
        Sample(0.0, 1.0, dict.fromkeys(CLASSES, 0), None, None, 0, dict.fromkeys(REPLICA_FIELDS, 0))
    )
]


class History:
    """Every API's history; the operator's sampler feeds it, the dashboard reads it."""

    def __init__(self, period: float = PERIOD, window: float = WINDOW) -> None:
        if period <= 0:
            raise ValueError("the sampling period must be positive")
        self.period = period
        self.window = window
        self.size = max(1, round(window / period))
        self.apis: dict[str, ApiHistory] = {}

    def observe(
        self,
        api: str,
        at: float,
        totals: Mapping[str, int],
        latencies: Iterable[float],
        queue: int,
        replicas: Mapping[str, int],
        clock: float | None = None,
    ) -> Sample:
        """Record one sample of ``api`` (its history starts with the first); ``at`` on the wall
        clock, ``clock`` on a monotonic one (``ApiHistory.observe``)."""
        history = self.apis.get(api)
        if history is None:
            history = self.apis[api] = ApiHistory(self.size)
        return history.observe(at, totals, latencies, queue, replicas, self.period, clock)

    def keep_only(self, apis: Iterable[str]) -> None:
        """Forget the APIs that are no longer deployed."""
        wanted = set(apis)
        for name in [name for name in self.apis if name not in wanted]:
            del self.apis[name]

    def columns(self, api: str) -> dict[str, list[Any]]:
        history = self.apis.get(api)
        return history.columns() if history is not None else ApiHistory(1).columns()

    def columns_json(self, api: str) -> bytes:
        """``columns(api)`` as JSON (kept until the API's next sample)."""
        history = self.apis.get(api)
        return history.columns_json() if history is not None else EMPTY_JSON


EMPTY_JSON = orjson.dumps(ApiHistory(1).columns())
