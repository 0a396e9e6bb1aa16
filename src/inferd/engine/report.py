"""What the local engine tells about its APIs: status, ``inferd get``'s view, /metrics, GC, zygotes.

Everything here reads the engine's state (``engine.state``) and changes nothing, so the
status an API shows, its description and the replica figures the gateway exports all come
from one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inferd.engine.failures import crash_loop
from inferd.engine.gpus import GpuPool, GpuUsage
from inferd.engine.state import ApiState, Replica


def status(state: ApiState) -> str:
    """The API's status: ``live``, ``updating``, ``error``, ``compute unavailable`` and so on."""
    version = state.version
    ready = sum(r.ready and r.version == version.id for r in state.replicas)
    minimum = state.config.api.compute.min_replicas
    if state.deleting:
        return "stopping"
    if version.oom and not ready:
        return "error (out of memory)"
    if version.error is not None:
        return "error"
    if ready >= max(1, minimum) or (state.desired == 0 and minimum == 0 and not state.replicas):
        return "live"
    if crash_loop(state) is not None:
        return "error"
    placed = state.deferred + sum(r.version == version.id and not r.retired for r in state.replicas)
    if state.unschedulable and placed < max(1, minimum):  # not even the minimum fits
        return "compute unavailable"
    if minimum == 0 and state.status == "live" and all(r.version == version.id for r in state.replicas):
        return "live"  # this version scaling up from zero (requests wait for it), not an update
    return "updating" if state.desired > 0 else "pending"


def describe(state: ApiState, in_flight: int, pool: GpuPool) -> dict[str, Any]:
    """Status and replica counts of one API (``inferd get``)."""
    version = state.version
    config = state.config
    return {
        "name": config.name,
        "deployment": config.deployment,
        "endpoint": config.endpoint,
        "model_format": config.api.model_format,
        "status": state.status,
        "requested": state.desired,
        "available": sum(r.ready for r in state.replicas),
        "up_to_date": sum(r.ready and r.version == version.id for r in state.replicas),
        "stale": sum(r.ready and r.version != version.id for r in state.replicas),
        "failed": state.failed,
        "timed_out": state.timed_out,
        "in_flight": in_flight,
        "last_update": state.last_update,
        "updated_ago": round(state.updated_ago(), 3),
        "version": version.id,
        "error": version.error
        or crash_loop(state)
        or state.compute_reason
        or (state.cap_reason if state.status == "compute unavailable" else None)
        or _out_of_memory(state),
        "error_detail": version.detail or None,
        "warning": version.warning,
        "capacity": None
        if state.fit is None or state.cap_reason is None
        else {"fit": state.fit, "reason": state.cap_reason},
        "replicas": [replica_info(r, pool) for r in state.replicas],
    }


def _out_of_memory(state: ApiState) -> str | None:
    """The reason of ``error (out of memory)``: which limit (the status alone said nothing more,
    and ``inferd deploy`` printed it twice: ``error (out of memory): error (out of memory)``)."""
    if state.status != "error (out of memory)":
        return None
    limit = state.config.api.compute.mem_limit
    return (
        f"its replicas used more than compute.mem_limit ({limit}) and were stopped "
        f"(see `inferd logs {state.key}`)"
    )


def replica_info(replica: Replica, pool: GpuPool) -> dict[str, Any]:
    """One replica for ``inferd get``: its process, what its model runs on, its GPUs' usage."""
    info: dict[str, Any] = {
        "id": replica.id,
        "pid": replica.process.pid,
        "version": replica.version,
        "state": replica_state(replica),
        "requests": replica.handle.requests,
        "device": replica.handle.info.get("device"),
    }
    if replica.gpus.devices:
        alive = replica.process.poll() is None
        usage = pool.usage(replica.process.pid, replica.gpus) if alive else []
        info["gpus"] = [vars(gpu) for gpu in usage] or [{"uuid": uuid} for uuid in replica.gpus.devices]
    return info


def in_use(apis: Mapping[str, ApiState]) -> set[Path]:
    """Files and folders the current versions and every running replica read (for GC)."""
    used: set[Path] = set()
    for state in apis.values():
        used.update(state.version.uses)
        for replica in state.replicas:
            used.update(replica.uses)
    return used


def runtimes_in_use(apis: Mapping[str, ApiState]) -> set[str]:
    """The runtimes an API is on, or a replica still runs (an API deleted, or updated to another
    runtime, keeps its runtime's zygote until the replicas it forked are gone)."""
    used: set[str] = {state.config.api.model_format for state in apis.values() if not state.deleting}
    for state in apis.values():
        used.update(r.source.config.api.model_format for r in state.replicas if r.source is not None)
    return used


def replica_state(replica: Replica) -> str:
    """What a replica is doing, as ``inferd get`` and ``/metrics`` say it: ``retiring`` for an old
    version's replica finishing its last requests (its handle still says ``ready``)."""
    return "retiring" if replica.retired else str(replica.handle.state)


def replica_states(apis: Mapping[str, ApiState]) -> dict[str, dict[str, int]]:
    """Replica counts by state per API (for /metrics)."""
    result: dict[str, dict[str, int]] = {}
    for name, state in apis.items():
        counts: dict[str, int] = {}
        for replica in state.replicas:
            key = replica_state(replica)
            counts[key] = counts.get(key, 0) + 1
        result[name] = counts
    return result


def replica_gpus(apis: Mapping[str, ApiState], pool: GpuPool) -> list[dict[str, Any]]:
    """Each GPU replica's devices with their utilisation and memory (for /metrics)."""
    return [
        {"api": api, "replica": replica, **vars(usage)}
        for api, replica, usage in replica_gpu_usage(apis, pool)
    ]


def replica_gpu_usage(apis: Mapping[str, ApiState], pool: GpuPool) -> list[tuple[str, str, GpuUsage]]:
    """``(api, replica id, usage)`` for every device of every live GPU replica."""
    return [
        (name, replica.id, usage)
        for name, state in apis.items()
        for replica in state.replicas
        if replica.gpus.devices and replica.process.poll() is None
        for usage in pool.usage(replica.process.pid, replica.gpus)
    ]
