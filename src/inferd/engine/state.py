"""What the local engine knows of each API: its versions, its replicas and their state."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inferd.config.schema import ApiConfig
from inferd.engine.autoscale import Autoscaler
from inferd.engine.gpus import Claim
from inferd.engine.zygotes import ForkedProcess
from inferd.replica.handle import ReplicaHandle, ReplicaState
from inferd.replica.messages import ReplicaSpec


@dataclass
class Version:
    """One version of an API: its config, and what preparing it produced."""

    id: str
    config: ApiConfig
    spec: ReplicaSpec | None = None
    error: str | None = None
    detail: str = ""
    oom: bool = False
    failures: int = 0
    next_start: float = 0.0
    last_crash: str = ""  # how its last replica that died unasked ended: "replica c-7 exited with code 3"
    uses: tuple[Path, ...] = ()  # what its replicas read: snapshot, cached model, environment
    warning: str | None = None
    # An unreachable model origin: what to prepare again (root, digest, refresh), and when.
    retry: tuple[Path, str, str, bool] | None = None  # prepare's root, digest, refresh, relax
    retry_at: float = 0.0


@dataclass
class Replica:
    """One replica process and its handle."""

    id: str
    version: str
    handle: ReplicaHandle
    process: subprocess.Popen[bytes] | ForkedProcess
    started: float = field(default_factory=time.monotonic)
    retired: bool = False
    uses: tuple[Path, ...] = ()
    cgroup: Path | None = None  # its capped cgroup v2 (compute.mem_limit), when the kernel caps it
    loaded: bool = False
    died_loading: bool = False
    crashed: bool = False  # closed without saying why; its exit code is logged when reaped
    stuck: bool = False
    source: Version | None = None  # the version it runs (to start another like it)
    over_mem_limit: bool = False  # stopped by the engine for passing compute.mem_limit
    gpus: Claim = field(default_factory=lambda: Claim(()))  # what its CUDA_VISIBLE_DEVICES names
    nice: int | None = None  # its nice value when the engine changed it (engine/priority.py)
    group_nice: int | None = None  # ... and its autogroup's (engine/priority.py)
    kept_low: bool = False  # its nice value may not be raised back: it is replaced (engine/priority.py)
    closed_at: float | None = None  # when its connection closed (it has nothing left to do)

    @property
    def ready(self) -> bool:
        """Serving: said READY and the engine took it (``loaded``): one over ``compute.mem_limit``
        at READY is killed instead, and its handle says READY until its socket's close is read."""
        return (
            self.loaded
            and not self.over_mem_limit
            and not self.retired
            and self.handle.state == ReplicaState.READY
        )


def boot_clock() -> float:
    """Seconds since the machine booted: no change of the wall clock moves it, and it counts the
    time the machine was suspended, which the monotonic clock leaves out (after a laptop's night
    with its lid closed, an API deployed the evening before said "last update 1m")."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class ApiState:
    """What the engine knows of one API."""

    version: Version
    desired: int
    autoscaler: Autoscaler
    replicas: list[Replica] = field(default_factory=list)
    failed: int = 0
    timed_out: int = 0
    last_update: float = field(default_factory=time.time)  # wall clock: when, for the user
    # the same moment on the boot clock: how long ago, whatever the wall clock does
    updated_clock: float = field(default_factory=boot_clock)
    deleting: bool = False
    unschedulable: bool = False
    deferred: int = 0  # replica starts waiting, this step, for their runtime's zygote to import
    compute_reason: str | None = None
    fit: int | None = None  # replicas placed while fewer than ``desired`` fit on this machine
    cap_reason: str | None = None
    step_error: str | None = None  # why the last reconcile step for this API failed
    step_failures: int = 0
    reserved: int = 0  # room this API's rollout freed for its new replicas (others may not take it)
    hold_until: float = 0.0  # no reconcile step before this (monotonic): back-off after a failure
    status: str = "pending"
    arrivals: int = 0  # the gateway's count of the API's requests at the last reconcile step

    @property
    def config(self) -> ApiConfig:
        return self.version.config

    @property
    def key(self) -> str:
        """``deployment/api``."""
        return self.version.config.key

    def updated(self, at: float | None = None) -> None:
        """The API was updated now, or at ``at`` (wall-clock seconds: a restored API's time)."""
        now = time.time()
        self.last_update = now if at is None else at
        self.updated_clock = boot_clock() - max(0.0, now - self.last_update)

    def updated_ago(self) -> float:
        """Seconds since the last update, on the boot clock: after NTP or an admin moved the
        wall clock a day, ``last update`` said "2d" for an update a minute old (or "0s", for a
        day, when the clock went back)."""
        return boot_clock() - self.updated_clock


def deployed(state: ApiState | None, version: Version, fixed_replicas: int | None) -> ApiState:
    """The API's state once ``version`` is deployed: a new one for a new API (or one deleted and
    deployed again, its old replicas draining), else ``state`` rolling ``version`` out.

    ``fixed_replicas``: ``inferd serve --replicas``, the count with autoscaling off."""
    compute, autoscaling = version.config.api.compute, version.config.api.autoscaling
    if state is None or state.deleting:
        fresh = ApiState(
            version=version,
            desired=compute.replicas_at_start if fixed_replicas is None else fixed_replicas,
            autoscaler=Autoscaler(
                autoscaling.target_in_flight, autoscaling.upscale_window, autoscaling.downscale_window
            ),
        )
        if state is not None:  # deleted, and deployed again: a new API, its old replicas draining
            fresh.replicas = state.replicas
        return fresh
    # the new `autoscaling:` applies from now on, with the load seen so far
    state.autoscaler.configure(
        autoscaling.target_in_flight, autoscaling.upscale_window, autoscaling.downscale_window
    )
    if state.desired == 0 and fixed_replicas is None:
        # scaled to zero: the new version starts as a first deploy does, so this deploy
        # too shows whether it loads; the autoscaler's idle window starts again
        state.desired = compute.replicas_at_start
        state.autoscaler.forget()
    state.version = version
    state.status = "updating"  # until the new version is live (report.status)
    state.failed = 0
    state.hold_until, state.step_failures, state.step_error = 0.0, 0, None
    state.compute_reason = None  # told again at the next step (add_api cleared it)
    state.updated()
    return state


def version_id(config: ApiConfig, project_digest: str, extra: str = "") -> str:
    """A hash of everything that changes what an API answers.

    Not the snapshot's folder (``project_root``): an edit elsewhere in the config file makes a
    new snapshot, and this API's replicas go on serving from the one they started in (it is
    kept while they run)."""
    digest = hashlib.sha256(config.identity(exclude={"project_root"}).encode())
    digest.update(project_digest.encode())
    digest.update(extra.encode())
    return digest.hexdigest()[:16]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def gpu_claims(apis: Mapping[str, ApiState]) -> list[Claim]:
    """The devices every live replica process holds, retiring ones too: never two on one device."""
    return [
        replica.gpus
        for state in apis.values()
        for replica in state.replicas
        if replica.gpus.devices and replica.process.poll() is None
    ]
