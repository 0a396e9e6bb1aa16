"""``/metrics`` with many APIs: cheap for the event loop that writes it, and the same text as
prometheus_client writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    SummaryMetricFamily,
)

from inferd.config.load import load_project
from inferd.gateway.app import Gateway
from inferd.gateway.prometheus import exposition
from tests.conftest import calls_made

APIS = 40


def gateway_of(tmp_path: Path, apis: int = APIS) -> Gateway:
    """A gateway serving ``apis`` Python APIs, the first few with traffic of every kind."""
    blocks = "".join(
        f"- kind: api\n  name: a{i}\n  predictor: {{path: p.py}}\n"
        + ("  tracker: {model_type: classification}\n" if i == 1 else "")
        + ("  tracker: {model_type: regression}\n" if i == 2 else "")
        for i in range(apis)
    )
    (tmp_path / "cortex.yaml").write_text('- kind: deployment\n  name: "many"\n' + blocks)
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    gateway = Gateway()
    for config in load_project(tmp_path).apis:
        gateway.add_api(config)
    first = gateway.apis["many/a0"]
    for latency in (0.0003, 0.002, 0.7, 12.0, 1e7):
        first.stats.add("cortex", 200, 1.0, latency, 0.0, b"")
    first.stats.add("v2", 503, 1.0, 0.001, 0.0, b"")
    first.stats.add_stream(0.01, 3, 0.5)
    first.batch_sizes[4] = 2
    labels = gateway.apis["many/a1"].stats
    labels.tracker.classes.update({'say "hi"\\\n': 3, "setosa": 5})
    values = gateway.apis["many/a2"].stats.tracker
    values.count, values.total, values.minimum, values.maximum = 2, 3.5, -1.25, 4.75
    first.stats.latency.add(np.array([float("inf")]))
    return gateway


def reference(gateway: Gateway) -> bytes:
    """What prometheus_client writes for the same families."""
    from inferd.gateway import prometheus

    class Collector:
        def collect(self) -> Any:
            kinds = prometheus.Kinds(
                CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily
            )
            return prometheus.families(gateway, kinds)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    text: bytes = generate_latest(registry)
    return text


def test_metrics_are_the_text_prometheus_client_writes(tmp_path: Path) -> None:
    gateway = gateway_of(tmp_path, apis=5)
    assert exposition(gateway) == reference(gateway)


def test_metrics_cost_a_few_calls_per_api(tmp_path: Path) -> None:
    # prometheus_client made about six thousand Python calls per API (a Sample and a dict per line,
    # each label name checked again): 100 ms of the event loop per scrape with 81 APIs, during
    # which the gateway answered no request.
    gateway = gateway_of(tmp_path)
    exposition(gateway)  # imports and caches aside
    calls, text = calls_made(lambda: exposition(gateway))
    assert text.count(b'api="a39"') > 80  # every API's histograms are there
    assert calls / APIS < 1000, calls / APIS  # about 540 (5,970 with prometheus_client)
