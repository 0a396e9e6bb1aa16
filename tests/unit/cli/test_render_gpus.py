"""``inferd get API``: a replica table with what each runs on and, on GPUs, their usage."""

from __future__ import annotations

from typing import Any

from inferd.cli.render import api_detail


def detail(replicas: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "status": "live",
        "up_to_date": len(replicas),
        "available": len(replicas),
        "requested": len(replicas),
        "last_update": None,
        "url": "http://127.0.0.1:8888/iris/classifier",
        "endpoint": "/iris/classifier",
        "replicas": replicas,
        **extra,
    }


def test_gpu_replicas_show_utilisation_and_memory_without_verbose() -> None:
    gpu = {"uuid": "GPU-0123456789ab-x", "index": 1, "utilization": 42.0, "memory_used": 512 * 2**20}
    replicas = [
        {
            "id": "classifier-1",
            "state": "ready",
            "device": "CUDAExecutionProvider",
            "gpus": [gpu | {"memory_total": 2**34}],
        }
    ]
    text = api_detail(detail(replicas))
    assert "runs on" in text and "gpu util" in text
    row = next(line for line in text.splitlines() if line.startswith("classifier-1"))
    assert row.split() == [
        "classifier-1",
        "ready",
        "CUDAExecutionProvider",
        "1",
        "(GPU-01234567)",
        "42%",
        "512",
        "/",
        "16384",
        "MiB",
    ]


def test_cpu_replicas_show_their_provider_with_verbose_only() -> None:
    replicas = [{"id": "classifier-1", "state": "ready", "device": "CPUExecutionProvider"}]
    assert "CPUExecutionProvider" not in api_detail(detail(replicas))
    text = api_detail(detail(replicas, config={"name": "classifier"}), verbose=True)
    assert "CPUExecutionProvider" in text and "gpu" not in text
