"""``GET /metrics``: the gateway's statistics in Prometheus' text format.

The hot path only bumps plain counters (``metrics.ApiStats``); the metric families are built
here when Prometheus scrapes, so metrics cost nearly nothing per request. They are written by
``gateway/promtext.py`` (prometheus_client's families write the same text, 50 times slower).
"""

from __future__ import annotations

from itertools import accumulate
from typing import TYPE_CHECKING, Any, NamedTuple

from inferd.gateway import promtext, shadow
from inferd.gateway.metrics import SHADOW, Histogram
from inferd.replica.handle import ReplicaState

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway

EXPOSITION_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    bounds = _BOUNDS.get(histogram.bounds)
    if bounds is None:
        bounds = _BOUNDS[histogram.bounds] = [repr(float(bound)) for bound in histogram.bounds]
    result = list(zip(bounds, map(float, accumulate(histogram.counts)), strict=False))
    result.append(("+Inf", float(histogram.count)))
    return result


_BOUNDS: dict[tuple[float, ...], list[str]] = {}  # each histogram's bounds as text, written once

# Every state of ``inferd_replicas`` is written for every API, 0 included: an alert on
# ``inferd_replicas{state="ready"} == 0`` finds an API whose replicas all failed (no line for a
# state would be "no data", which no comparison matches). "retiring": an old version's, draining.
REPLICA_STATES = (*(str(state) for state in ReplicaState), "retiring")
# Likewise ``inferd_requests_total`` of each API's own route (``protocol="cortex"``), and of every
# protocol it has answered on, for these codes: rate() and increase() count from a series' first
# sample, so the errors that made a series appear (its first 5 answers 500, between two scrapes)
# would read as an increase of 0.
SEEDED_CODES = (200, 400, 500, 503, 504)
_SEEDED = {("cortex", code) for code in SEEDED_CODES}


class Kinds(NamedTuple):
    """The metric family classes: promtext's, or prometheus_client's (the tests compare them)."""

    counter: Any
    gauge: Any
    histogram: Any
    summary: Any


TEXT = Kinds(promtext.CounterFamily, promtext.GaugeFamily, promtext.HistogramFamily, promtext.SummaryFamily)


def families(gateway: Gateway, kinds: Kinds = TEXT) -> list[Any]:
    """Every metric family of the gateway, in the order ``/metrics`` shows them."""
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily = kinds
    requests = CounterMetricFamily(
        "inferd_requests",
        "Requests answered, by API, protocol and HTTP status code.",
        labels=["deployment", "api", "protocol", "code"],
    )
    latency = HistogramMetricFamily(
        "inferd_request_duration_seconds",
        "Time from a request's arrival to its answer, in the gateway.",
        labels=["deployment", "api"],
    )
    stages = HistogramMetricFamily(
        "inferd_stage_duration_seconds",
        "Time spent per stage: queue (waiting for a replica), pre_inference, model, post_inference.",
        labels=["deployment", "api", "stage"],
    )
    in_flight = GaugeMetricFamily(
        "inferd_in_flight_requests", "Requests queued or running.", labels=["deployment", "api"]
    )
    queued = GaugeMetricFamily(
        "inferd_queued_requests", "Requests waiting for a replica.", labels=["deployment", "api"]
    )
    replicas = GaugeMetricFamily(
        "inferd_replicas", "Replicas by state.", labels=["deployment", "api", "state"]
    )
    classes = CounterMetricFamily(
        "inferd_predictions",
        "Predictions by class (tracker model_type: classification).",
        labels=["deployment", "api", "class"],
    )
    values = SummaryMetricFamily(
        "inferd_prediction_value",
        "Predicted values (tracker model_type: regression).",
        labels=["deployment", "api"],
    )
    lowest = GaugeMetricFamily(
        "inferd_prediction_value_min", "Smallest predicted value.", labels=["deployment", "api"]
    )
    highest = GaugeMetricFamily(
        "inferd_prediction_value_max", "Largest predicted value.", labels=["deployment", "api"]
    )
    batches = CounterMetricFamily(
        "inferd_batches",
        "Model calls by batch size (APIs with batching).",
        labels=["deployment", "api", "size"],
    )
    pipelined = CounterMetricFamily(
        "inferd_pipelined_requests",
        "Requests written to a busy replica behind others in one write (fast APIs under load).",
        labels=["deployment", "api"],
    )
    first_item = HistogramMetricFamily(
        "inferd_stream_first_item_seconds",
        "Streamed answers: time from the request to its first item.",
        labels=["deployment", "api"],
    )
    stream_duration = HistogramMetricFamily(
        "inferd_stream_duration_seconds",
        "Streamed answers: time from the request to its end.",
        labels=["deployment", "api"],
    )
    streams = CounterMetricFamily(
        "inferd_streams", "Streamed answers that ended.", labels=["deployment", "api"]
    )
    stream_items = CounterMetricFamily(
        "inferd_stream_items",
        "Items sent in streamed answers (per stream: divide by inferd_streams).",
        labels=["deployment", "api"],
    )
    buffered = GaugeMetricFamily(
        "inferd_stream_buffered_bytes",
        "Bytes of streamed answers the gateway holds for clients that have not read them yet.",
        labels=["deployment", "api"],
    )
    held: dict[str, int] = {}
    for conn in list(gateway.connections):
        if conn.stream is not None and conn.queue is not None and conn.transport is not None:
            key = conn.queue.key
            held[key] = held.get(key, 0) + conn.transport.get_write_buffer_size()
    shadowed = {route.target for route in gateway.shadows.routes.values()}
    # Labelled by deployment and API name: two deployments may each have an API "classifier".
    for queue in sorted(gateway.apis.values(), key=lambda q: q.key):
        ids = [queue.deployment, queue.api_name]
        buffered.add_metric(ids, held.get(queue.key, 0))
        stats = queue.stats
        # from 0 once a replica said its function is a generator (``pipeline`` off), as the requests
        if stats.streams or any(not replica.pipeline for replica in queue.replicas):
            first_item.add_metric(ids, _buckets(stats.first_item), stats.first_item.total)
            stream_duration.add_metric(ids, _buckets(stats.stream_duration), stats.stream_duration.total)
            streams.add_metric(ids, stats.streams)
            stream_items.add_metric(ids, stats.stream_items)
        for size, count in sorted(queue.batch_sizes.items()):
            batches.add_metric([*ids, str(size)], count)
        pipelined.add_metric(ids, queue.pipelined)
        by_status = stats.by_status
        seeded = _SEEDED | {(protocol, code) for protocol, _ in by_status for code in SEEDED_CODES}
        if queue.key in shadowed:  # the copies it answers, from the first
            seeded |= {(SHADOW, code) for code in SEEDED_CODES}
        for protocol, status in sorted({*by_status, *seeded}):
            requests.add_metric([*ids, protocol, str(status)], by_status.get((protocol, status), 0))
        latency.add_metric(ids, _buckets(stats.latency), stats.latency.total)
        for stage, histogram in stats.stages.items():
            stages.add_metric([*ids, stage], _buckets(histogram), histogram.total)
        in_flight.add_metric(ids, queue.in_flight)
        queued.add_metric(ids, len(queue.waiting))
        for label, count in sorted(stats.tracker.classes.items()):
            classes.add_metric([*ids, label], count)
        tracker = stats.tracker
        if stats.tracker_type == "regression" or tracker.count:  # from 0, as the request counts
            values.add_metric(ids, count_value=tracker.count, sum_value=tracker.total)
        if tracker.count and tracker.minimum is not None and tracker.maximum is not None:
            lowest.add_metric(ids, tracker.minimum)
            highest.add_metric(ids, tracker.maximum)
    for key, by_state in sorted(gateway.replica_states().items()):
        deployment, _, api = key.partition("/")
        for state in sorted({*REPLICA_STATES, *by_state}):
            replicas.add_metric([deployment, api, state], by_state.get(state, 0))
    return [
        *_gpu_families(gateway.replica_gpus(), GaugeMetricFamily),
        *shadow.families(gateway.shadows, CounterMetricFamily),
        requests,
        latency,
        stages,
        in_flight,
        queued,
        replicas,
        batches,
        pipelined,
        classes,
        values,
        lowest,
        highest,
        first_item,
        stream_duration,
        streams,
        stream_items,
        buffered,
    ]


def _gpu_families(gpus: list[dict[str, Any]], gauge: Any) -> list[Any]:
    """Utilisation and memory of each GPU replica's devices; no families at all without GPUs."""
    if not gpus:
        return []
    labels = ["deployment", "api", "replica", "gpu"]
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
        deployment, _, api = str(gpu["api"]).rpartition("/")  # the API's key
        key = [deployment, api, gpu["replica"], gpu["uuid"]]
        if gpu.get("utilization") is not None:
            utilization.add_metric(key, gpu["utilization"] / 100)
        if gpu.get("memory_used") is not None:
            used.add_metric(key, gpu["memory_used"])
        total.add_metric(key, gpu["memory_total"])
    return [utilization, used, total]


def exposition(gateway: Gateway) -> bytes:
    """The current metrics in the Prometheus text exposition format."""
    return "".join(family.text() for family in families(gateway)).encode()
