"""What the local engine knows of each API: its versions, its replicas and their state."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import dataclass, field

from inferd.config.schema import ApiConfig
from inferd.engine.autoscale import Autoscaler
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


@dataclass
class Replica:
    """One replica process and its handle."""

    id: str
    version: str
    handle: ReplicaHandle
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    retired: bool = False
    loaded: bool = False
    died_loading: bool = False
    stuck: bool = False

    @property
    def ready(self) -> bool:
        return self.handle.state == ReplicaState.READY and not self.retired


@dataclass
class ApiState:
    """What the engine knows of one API."""

    version: Version
    desired: int
    autoscaler: Autoscaler
    replicas: list[Replica] = field(default_factory=list)
    failed: int = 0
    timed_out: int = 0
    last_update: float = field(default_factory=time.time)
    deleting: bool = False
    unschedulable: bool = False
    compute_reason: str | None = None
    status: str = "pending"

    @property
    def config(self) -> ApiConfig:
        return self.version.config

    @property
    def name(self) -> str:
        return self.version.config.name


def version_id(config: ApiConfig, project_digest: str, extra: str = "") -> str:
    """A hash of everything that changes what an API answers."""
    digest = hashlib.sha256(config.model_dump_json().encode())
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
