"""/metrics carries each GPU replica's utilisation and memory, and nothing of GPUs without them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from inferd.gateway.app import Gateway
from inferd.gateway.prometheus import exposition


def test_gpu_replicas_have_utilisation_and_memory() -> None:
    gateway = Gateway()
    gateway.replica_gpus = lambda: [
        {
            "api": "iris/classifier",  # the API's key
            "replica": "classifier-1",
            "uuid": "GPU-abc",
            "index": 0,
            "utilization": 37.0,
            "memory_used": 3 * 2**30,
            "memory_total": 16 * 2**30,
        }
    ]
    samples = {
        sample.name: (sample.labels, sample.value)
        for family in text_string_to_metric_families(exposition(gateway).decode())
        for sample in family.samples
        if "gpu" in sample.name
    }
    labels = {"deployment": "iris", "api": "classifier", "replica": "classifier-1", "gpu": "GPU-abc"}
    assert samples == {
        "inferd_replica_gpu_utilization_ratio": (labels, 0.37),
        "inferd_replica_gpu_memory_bytes": (labels, 3 * 2**30),
        "inferd_replica_gpu_memory_total_bytes": (labels, 16 * 2**30),
    }


def test_no_gpu_metrics_on_a_machine_without_gpus() -> None:
    assert b"gpu" not in exposition(Gateway()).lower()
