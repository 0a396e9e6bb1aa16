"""``GET /metrics``: the gateway's statistics in Prometheus' text format.

The hot path only bumps plain counters (``metrics.ApiStats``); the metric families are built
here when Prometheus scrapes, so metrics cost nearly nothing per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from inferd.gateway.metrics import Histogram

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway

EXPOSITION_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    cumulative = 0
    result = []
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        cumulative += count
        result.append((repr(float(bound)), float(cumulative)))
    result.append(("+Inf", float(histogram.count)))
    return result


class _Collector:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            SummaryMetricFamily,
        )

        gateway = self.gateway
        requests = CounterMetricFamily(
            "inferd_requests",
            "Requests answered, by API, protocol and HTTP status code.",
            labels=["api", "protocol", "code"],
        )
        latency = HistogramMetricFamily(
            "inferd_request_duration_seconds",
            "Time from a request's arrival to its answer, in the gateway.",
            labels=["api"],
        )
        stages = HistogramMetricFamily(
            "inferd_stage_duration_seconds",
            "Time spent per stage: queue (waiting for a replica), pre_inference, model, post_inference.",
            labels=["api", "stage"],
        )
        in_flight = GaugeMetricFamily(
            "inferd_in_flight_requests", "Requests queued or running.", labels=["api"]
        )
        queued = GaugeMetricFamily(
            "inferd_queued_requests", "Requests waiting for a replica.", labels=["api"]
        )
        replicas = GaugeMetricFamily("inferd_replicas", "Replicas by state.", labels=["api", "state"])
        classes = CounterMetricFamily(
            "inferd_predictions",
            "Predictions by class (tracker model_type: classification).",
            labels=["api", "class"],
        )
        values = SummaryMetricFamily(
            "inferd_prediction_value", "Predicted values (tracker model_type: regression).", labels=["api"]
        )
        lowest = GaugeMetricFamily("inferd_prediction_value_min", "Smallest predicted value.", labels=["api"])
        highest = GaugeMetricFamily("inferd_prediction_value_max", "Largest predicted value.", labels=["api"])
        batches = CounterMetricFamily(
            "inferd_batches", "Model calls by batch size (APIs with batching).", labels=["api", "size"]
        )
        first_item = HistogramMetricFamily(
            "inferd_stream_first_item_seconds",
            "Streamed answers: time from the request to its first item.",
            labels=["api"],
        )
        stream_duration = HistogramMetricFamily(
            "inferd_stream_duration_seconds",
            "Streamed answers: time from the request to its end.",
            labels=["api"],
        )
        streams = CounterMetricFamily("inferd_streams", "Streamed answers that ended.", labels=["api"])
        stream_items = CounterMetricFamily(
            "inferd_stream_items",
            "Items sent in streamed answers (per stream: divide by inferd_streams).",
            labels=["api"],
        )
        buffered = GaugeMetricFamily(
            "inferd_stream_buffered_bytes",
            "Bytes of streamed answers the gateway holds for clients that have not read them yet.",
            labels=["api"],
        )
        held: dict[str, int] = {}
        for conn in list(gateway.connections):
            if conn.stream is not None and conn.queue is not None and conn.transport is not None:
                name = conn.queue.name
                held[name] = held.get(name, 0) + conn.transport.get_write_buffer_size()
        for name, queue in sorted(gateway.apis.items()):
            buffered.add_metric([name], held.get(name, 0))
            stats = queue.stats
            if stats.streams:
                first_item.add_metric([name], _buckets(stats.first_item), stats.first_item.total)
                stream_duration.add_metric(
                    [name], _buckets(stats.stream_duration), stats.stream_duration.total
                )
                streams.add_metric([name], stats.streams)
                stream_items.add_metric([name], stats.stream_items)
            for size, count in sorted(queue.batch_sizes.items()):
                batches.add_metric([name, str(size)], count)
            for (protocol, status), count in sorted(stats.by_status.items()):
                requests.add_metric([name, protocol, str(status)], count)
            latency.add_metric([name], _buckets(stats.latency), stats.latency.total)
            for stage, histogram in stats.stages.items():
                stages.add_metric([name, stage], _buckets(histogram), histogram.total)
            in_flight.add_metric([name], queue.in_flight)
            queued.add_metric([name], len(queue.waiting))
            for label, count in sorted(stats.tracker.classes.items()):
                classes.add_metric([name, label], count)
            tracker = stats.tracker
            if tracker.count and tracker.minimum is not None and tracker.maximum is not None:
                values.add_metric([name], count_value=tracker.count, sum_value=tracker.total)
                lowest.add_metric([name], tracker.minimum)
                highest.add_metric([name], tracker.maximum)
        for name, by_state in sorted(gateway.replica_states().items()):
            for state, count in sorted(by_state.items()):
                replicas.add_metric([name, state], count)
        yield from _gpu_families(gateway.replica_gpus(), GaugeMetricFamily)
        yield from (
            requests,
            latency,
            stages,
            in_flight,
            queued,
            replicas,
            batches,
            classes,
            values,
            lowest,
            highest,
            first_item,
            stream_duration,
            streams,
            stream_items,
            buffered,
        )


def _gpu_families(gpus: list[dict[str, Any]], gauge: Any) -> list[Any]:
    """Utilisation and memory of each GPU replica's devices; no families at all without GPUs."""
    if not gpus:
        return []
    labels = ["api", "replica", "gpu"]
    utilization = gauge(
        "inferd_replica_gpu_utilization_ratio",
        "Share of time the replica's GPU was busy (the device's, as NVML reports it).",
        labels=labels,
    )
    used = gauge(
        "inferd_replica_gpu_memory_bytes", "GPU memory the replica uses on the device.", labels=labels
    )
    total = gauge("inferd_replica_gpu_memory_total_bytes", "Memory of the replica's GPU.", labels=labels)
    for gpu in gpus:
        key = [gpu["api"], gpu["replica"], gpu["uuid"]]
        if gpu.get("utilization") is not None:
            utilization.add_metric(key, gpu["utilization"] / 100)
        if gpu.get("memory_used") is not None:
            used.add_metric(key, gpu["memory_used"])
        total.add_metric(key, gpu["memory_total"])
    return [utilization, used, total]


def exposition(gateway: Gateway) -> bytes:
    """The current metrics in the Prometheus text exposition format."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(gateway))
    text: bytes = generate_latest(registry)
    return text
