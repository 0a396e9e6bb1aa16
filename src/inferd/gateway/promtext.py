"""Prometheus' text format written straight, for ``GET /metrics`` (``gateway/prometheus.py``).

prometheus_client builds a ``Sample`` (a named tuple and a dict of labels) for every line, then
checks and escapes each label name again as it writes it: about six thousand Python calls per
API, which with 81 APIs kept the gateway's event loop from answering any request for 100 ms at
every scrape. These families take the calls its ``*MetricFamily`` classes take and write the
same bytes (``tests/unit/gateway/test_prometheus_text.py`` compares them), a line at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Values met before (most counts are small, most are 0); -0.0 may come out as 0.0, equal to it.
_WRITTEN: dict[float, str] = {}


def number(value: float) -> str:
    """A sample's value as Prometheus (and prometheus_client's ``floatToGoString``) writes it."""
    text = _WRITTEN.get(value)
    if text is None:
        text = _number(float(value))
        if len(_WRITTEN) < 10_000:
            _WRITTEN[value] = text
    return text


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:  # NaN
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape(value: str) -> str:
    """A label value inside its double quotes."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Family:
    """One metric family: its ``# HELP`` and ``# TYPE`` lines, then a line per sample."""

    kind = "untyped"
    suffix = ""

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self.name = name + self.suffix
        self.labels = list(labels)
        help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self.lines = [f"# HELP {self.name} {help_text}\n# TYPE {self.name} {self.kind}\n"]

    def _pairs(self, values: Sequence[str], names: list[str] | None = None) -> list[str]:
        """``name="value"`` for each label, sorted by name as prometheus_client writes them."""
        return [
            f'{key}="{escape(str(value))}"'
            for key, value in sorted(zip(names or self.labels, values, strict=True))
        ]

    def _line(self, name: str, pairs: list[str], value: float) -> None:
        labels = "{" + ",".join(pairs) + "}" if pairs else ""
        self.lines.append(f"{name}{labels} {number(value)}\n")

    def text(self) -> str:
        return "".join(self.lines)


class CounterFamily(_Family):
    kind = "counter"
    suffix = "_total"

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self._line(self.name, self._pairs(labels), value)


class GaugeFamily(_Family):
    kind = "gauge"

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self._line(self.name, self._pairs(labels), value)


class SummaryFamily(_Family):
    kind = "summary"

    def add_metric(self, labels: Sequence[str], count_value: float, sum_value: float) -> None:
        pairs = self._pairs(labels)
        self._line(f"{self.name}_count", pairs, count_value)
        self._line(f"{self.name}_sum", pairs, sum_value)


class HistogramFamily(_Family):
    kind = "histogram"

    def add_metric(
        self, labels: Sequence[str], buckets: Sequence[tuple[str, float]], sum_value: float
    ) -> None:
        """``buckets``: (upper bound as text, cumulative count), ``+Inf`` last. The bounds are
        numbers, written as they are (nothing in them to escape)."""
        pairs = self._pairs(labels)
        # `le` sorts among the other labels: the text before and after it is the same per bucket
        at = sum(name < "le" for name in self.labels)
        head = ",".join(pairs[:at]) + ("," if at else "")
        tail = ("," if at < len(pairs) else "") + ",".join(pairs[at:])
        name = f'{self.name}_bucket{{{head}le="'
        self.lines.extend(f'{name}{bound}"{tail}}} {number(count)}\n' for bound, count in buckets)
        if float(buckets[0][0]) >= 0:  # as prometheus_client: no sum and count with negative buckets
            self._line(f"{self.name}_count", pairs, buckets[-1][1])
            self._line(f"{self.name}_sum", pairs, sum_value)
