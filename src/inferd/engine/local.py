"""The local engine: replica processes on this machine, connected to the gateway by socketpairs.

Each replica is ``python -m inferd.replica.worker FD`` with its end of a Unix socketpair
passed as FD (the gateway's end is never inherited, so a replica sees EOF when the gateway
goes). A reconcile loop keeps each API at its desired count and restarts replicas that die,
backing off while they keep failing.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from inferd.config.schema import ApiConfig, Project, is_remote
from inferd.errors import LoadError
from inferd.replica.handle import ReplicaHandle, ReplicaState
from inferd.replica.messages import ReplicaSpec
from inferd.replica.worker import SPEC_ENV
from inferd.storage import local_model_path, tree_digest
from inferd.types import ReplicaSink

log = logging.getLogger("inferd.engine")

RECONCILE_SECONDS = 0.25
MAX_BACKOFF = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class Replica:
    """One replica process and its handle."""

    handle: ReplicaHandle
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


@dataclass
class ApiState:
    """What the engine knows of one API: its spec, desired count and live replicas."""

    config: ApiConfig
    spec: ReplicaSpec
    desired: int
    replicas: list[Replica] = field(default_factory=list)
    failures: int = 0
    next_start: float = 0.0
    error: str | None = None
    error_detail: str = ""


def api_version(config: ApiConfig, project_root: Path, model_path: Path | None) -> str:
    """A hash of everything that changes what an API answers: spec, user code, model content."""
    digest = hashlib.sha256(config.model_dump_json().encode())
    for relative in (config.api.handler_file,):
        if relative is not None:
            digest.update(tree_digest(project_root / relative).encode())
    if model_path is not None and model_path.exists():
        digest.update(tree_digest(model_path).encode())
    return digest.hexdigest()[:16]


class LocalEngine:
    """Starts, watches and stops replica processes; implements ``ReplicaEvents``."""

    def __init__(self, sink: ReplicaSink, log_dir: Path | None = None) -> None:
        self.sink = sink
        self.log_dir = log_dir
        self.apis: dict[str, ApiState] = {}
        self._ids = itertools.count(1)
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[object]] = set()

    # desired state

    def apply(self, project: Project) -> None:
        """Serve every API of ``project`` (the reconcile loop starts the replicas)."""
        for config in project.apis:
            model_path = self.model_path(config, project.root)
            version = api_version(config, project.root, model_path)
            spec = ReplicaSpec(
                api=config.api,
                project_root=project.root,
                model_path=model_path,
                replica_id="",
                version=version,
            )
            desired = max(1, config.api.compute.replicas_at_start)
            self.apis[config.name] = ApiState(config=config, spec=spec, desired=desired)
            self.sink.add_api(config)
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._reconcile_forever())

    @staticmethod
    def model_path(config: ApiConfig, project_root: Path) -> Path | None:
        uri = config.api.model_uri
        if uri is None:
            return None
        if is_remote(uri):
            raise LoadError(f"api '{config.name}': remote models ({uri}) need the operator")
        return local_model_path(uri, project_root)

    # the loop

    async def _reconcile_forever(self) -> None:
        while not self._stopping:
            self.reconcile()
            await asyncio.sleep(RECONCILE_SECONDS)

    def reconcile(self) -> None:
        """Reap exited processes and start replicas where fewer run than desired."""
        now = time.monotonic()
        for state in self.apis.values():
            for replica in list(state.replicas):
                if replica.process.poll() is not None and replica.handle.state in (
                    ReplicaState.CLOSED,
                    ReplicaState.FAILED,
                ):
                    state.replicas.remove(replica)
            missing = state.desired - len(state.replicas)
            if missing > 0 and now >= state.next_start:
                for _ in range(missing):
                    self._start(state)

    def _start(self, state: ApiState) -> None:
        replica_id = f"{state.config.name}-{next(self._ids)}"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spec = state.spec.model_copy(update={"replica_id": replica_id})
        env = dict(os.environ, **{SPEC_ENV: spec.model_dump_json()})
        out = self._log_stream(state.config.name)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "inferd.replica.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd=str(state.spec.project_root),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        finally:
            theirs.close()
            if out is not None:
                out.close()
        handle = ReplicaHandle(state.config.name, replica_id, state.spec.version, self)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(lambda: handle, ours))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        state.replicas.append(Replica(handle=handle, process=process))

    def _log_stream(self, api: str) -> IO[bytes] | None:
        if self.log_dir is None:
            return None  # inherit the terminal (``inferd serve``)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.log_dir / f"{api}.log").open("ab")

    def _state(self, handle: ReplicaHandle) -> ApiState | None:
        state = self.apis.get(handle.api)
        if state is None or all(r.handle is not handle for r in state.replicas):
            return None
        return state

    # ReplicaEvents

    def replica_ready(self, handle: ReplicaHandle) -> None:
        state = self._state(handle)
        if state is None or self._stopping:
            handle.close()
            return
        state.failures = 0
        if state.error is not None:
            state.error = None
            self.sink.api_error(handle.api, None)
        self.sink.replica_ready(handle.api, handle)

    def replica_failed(self, handle: ReplicaHandle, error: str, detail: str) -> None:
        state = self._state(handle)
        if state is None:
            return
        state.error = error
        state.error_detail = detail
        self.sink.api_error(handle.api, error)

    def replica_closed(self, handle: ReplicaHandle) -> None:
        self.sink.replica_gone(handle.api, handle)
        state = self._state(handle)
        if state is None or self._stopping:
            return
        now = time.monotonic()
        started = next(r.started for r in state.replicas if r.handle is handle)
        if now - started > 60:  # it ran fine for a while: this is a fresh failure
            state.failures = 0
        state.failures += 1
        state.next_start = now + min(MAX_BACKOFF, 0.25 * 2 ** (state.failures - 1))
        if handle.state != ReplicaState.FAILED:
            log.warning("replica %s of api '%s' stopped; starting another", handle.replica_id, handle.api)

    # shutdown

    async def stop(self) -> None:
        """Close every replica's socket, wait for the processes, kill the stragglers."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        replicas = [r for state in self.apis.values() for r in state.replicas]
        for replica in replicas:
            self.sink.replica_gone(replica.handle.api, replica.handle)
            replica.handle.close()
        deadline = time.monotonic() + STOP_TIMEOUT
        for replica in replicas:
            while replica.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait()
