"""The local engine: replica processes on this machine, connected to the gateway by socketpairs.

Each replica is ``python -m inferd.replica.worker FD`` with its end of a Unix socketpair
passed as FD (the gateway's end is never inherited, so a replica sees EOF when the gateway
goes, and the kernel ends it if the gateway process dies). A reconcile loop keeps each API at
the count the autoscaler wants, rolls new versions in before retiring old ones, replaces
replicas that die (backing off while they keep failing), and stops replicas that outgrow
``compute.mem``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from inferd.config.schema import ApiConfig, Project, is_remote
from inferd.engine.autoscale import Autoscaler
from inferd.engine.capacity import Capacity, Need
from inferd.engine.gpus import gpu_need, replica_environment
from inferd.engine.memlimit import MemoryCaps
from inferd.engine.models import fetch_model, retry_delay
from inferd.engine.output import ApiLogs
from inferd.engine.packages import ensure_packages, packages_dir
from inferd.engine.reconcile import ReplicaView, plan
from inferd.engine.state import (
    ApiState,
    Replica,
    Version,
    gpu_claims,
    replica_gpu_usage,
    replica_info,
    rss_bytes,
    version_id,
)
from inferd.engine.zygotes import ForkedProcess, Zygotes, enabled
from inferd.errors import InferdError, UnreachableError
from inferd.replica import messages
from inferd.replica.handle import ReplicaHandle, ReplicaState
from inferd.replica.messages import ReplicaSpec
from inferd.storage import local_model_path, model_files, tree_digest
from inferd.types import ReplicaSink

log = logging.getLogger("inferd.engine")

RECONCILE_SECONDS = 0.25
MAX_BACKOFF = 30.0
STOP_TIMEOUT = 10.0


class LocalEngine:
    """Starts, watches and stops replica processes; implements ``ReplicaEvents``."""

    def __init__(
        self, sink: ReplicaSink, home: Path, log_dir: Path | None = None, fixed_replicas: int | None = None
    ) -> None:
        # fixed_replicas: exactly that many per API, autoscaling off (``inferd serve --replicas``,
        # what an exported Kubernetes pod runs while the HorizontalPodAutoscaler scales pods)
        self.fixed_replicas = fixed_replicas
        self.sink = sink
        self.home = home
        self.log_dir = log_dir
        self.logs = ApiLogs(log_dir) if log_dir is not None else None
        self.caps: MemoryCaps | None = None  # made when an API first asks for mem_limit
        self.capacity = Capacity.of_this_machine()
        self.apis: dict[str, ApiState] = {}
        self.sources: dict[str, Path] = {}  # deployment -> the user's folder it was deployed from
        self._ids = itertools.count(1)
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.zygotes = Zygotes() if enabled() else None

    # desired state

    async def apply(
        self,
        project: Project,
        refresh: str = "",
        only: Collection[str] | None = None,
        environ: Mapping[str, str] | None = None,
        source: Path | None = None,
    ) -> dict[str, str]:
        """Create or update every API of ``project``; delete the deployment's other APIs.

        Returns ``{api: "created" | "updated" | "unchanged"}``. Remote models are downloaded
        and requirements installed before this returns; a failure there is the API's error.
        With ``only``, existing APIs not named there keep their version (``serve --reload``
        rolls just the APIs an edit affects). ``environ``: the variables that
        ``auth.keys_from_env`` reads (None: this process's). ``source``: the user's folder when
        ``project`` is a snapshot of it (tracebacks name the user's files).
        """
        if source is not None:
            self.sources[project.deployment.name] = source
        digest = await asyncio.to_thread(tree_digest, project.root)
        results: dict[str, str] = {}
        for config in project.apis:
            if only is not None and config.name not in only and config.key in self.apis:
                results[config.name] = "unchanged"
                continue
            version = await self._prepare(
                config, project.root, digest, refresh, project.deployment.relax_pins
            )
            state = self.apis.get(config.key)
            if state is not None and state.version.id == version.id and not state.deleting:
                results[config.name] = "unchanged"
                if config.api.auth is not None:
                    self.sink.add_api(config, environ)  # the keys may have changed
                continue
            results[config.name] = "created" if state is None or state.deleting else "updated"
            if state is None:
                compute = config.api.compute
                autoscaling = config.api.autoscaling
                state = ApiState(
                    version=version,
                    desired=compute.replicas_at_start if self.fixed_replicas is None else self.fixed_replicas,
                    autoscaler=Autoscaler(
                        autoscaling.target_in_flight, autoscaling.upscale_window, autoscaling.downscale_window
                    ),
                )
                self.apis[config.key] = state
            else:
                state.version = version
                state.deleting = False
                state.failed = 0
                state.hold_until, state.step_failures, state.step_error = 0.0, 0, None
                state.last_update = time.time()
            self.sink.add_api(config, environ)
            self.sink.api_error(config.key, version.error)
            self._event(config.key, f"version {version.id} {results[config.name]}")
        keep = {config.key for config in project.apis}
        for name, state in list(self.apis.items()):
            if state.config.deployment == project.deployment.name and name not in keep:
                self.delete(name)
        self.sink.set_splitters(project.deployment.name, project.splitters)
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._reconcile_forever())
        self.reconcile()
        return results

    async def _prepare(
        self, config: ApiConfig, root: Path, digest: str, refresh: str, relax: bool = False
    ) -> Version:
        uri = config.api.model_uri
        model_path: Path | None = None
        extra = refresh
        error: InferdError | None = None
        extra_paths: tuple[Path, ...] = ()
        warning = None
        try:
            if uri is not None and is_remote(uri):
                self._event(config.key, f"fetching {uri}")
                model_path, model_digest, warning = await fetch_model(uri)
                if warning is not None:
                    self._event(config.key, f"warning: {warning}")
                extra += model_digest
            elif uri is not None:
                model_path = local_model_path(uri, root)
            requirements = root / "requirements.txt"
            if requirements.is_file():
                if not (packages_dir(self.home, requirements, relax) / ".complete").exists():
                    self._event(config.key, "installing requirements.txt")
                extra += "relax-pins" if relax else ""

                def warn(text: str, api: str = config.key) -> None:
                    self._event(api, f"warning: {text}", logging.WARNING)

                extra_paths = (
                    await asyncio.to_thread(ensure_packages, self.home, requirements, relax, warn),
                )
        except InferdError as exc:
            error = exc
        version = Version(id=version_id(config, digest, extra), config=config, warning=warning)
        if error is not None:
            version.error = error.message.partition("\n")[0]
            version.detail = error.message
            self._event(config.key, f"error: {error.message}")
            if isinstance(error, UnreachableError):  # try again later: the origin may come back
                version.retry = (root, digest, refresh)
                version.retry_at = time.monotonic() + retry_delay(0)
        else:
            version.spec = ReplicaSpec(
                api=config.api,
                project_root=root,
                model_path=model_path,
                replica_id="",
                version=version.id,
                extra_paths=extra_paths,
                shown_root=self.sources.get(config.deployment),
            )
            version.uses = (root, *extra_paths, *(await asyncio.to_thread(model_files, model_path)))
        return version

    async def _retry_fetch(self, name: str, failed: Version) -> None:
        """Prepare a version whose model origin was unreachable again; on success it rolls out."""
        assert failed.retry is not None
        fresh = await self._prepare(failed.config, *failed.retry)
        state = self.apis.get(name)
        if state is None or state.version is not failed or state.deleting:
            return
        if fresh.spec is None:
            failed.error, failed.detail = fresh.error, fresh.detail
            failed.failures += 1
            failed.retry_at = time.monotonic() + retry_delay(failed.failures)
            return
        state.version = fresh
        state.last_update = time.time()
        self.sink.api_error(name, None)
        self._event(name, f"the model's origin answered again: version {fresh.id} created")
        self.reconcile()

    def delete(self, name: str) -> None:
        """Stop routing to API ``name`` (its key) now; its replicas finish their requests, then stop."""
        state = self.apis.get(name)
        if state is None:
            return
        state.deleting = True
        state.last_update = time.time()
        self.sink.remove_api(name)
        self._event(name, "deleted")

    # the loop

    async def _reconcile_forever(self) -> None:
        while not self._stopping:
            try:
                self.reconcile()
            except Exception:  # never let one bad tick stop the control loop
                log.exception("reconcile failed")
            await asyncio.sleep(RECONCILE_SECONDS)

    def reconcile(self) -> None:
        """One control step: reap, watch memory, autoscale, start and retire replicas.

        A step that fails for one API (a replica that cannot be started: no memory, too many
        open files) becomes that API's ``error`` with the reason, and the API is left alone for
        a growing pause; the other APIs carry on.
        """
        now = time.monotonic()
        for state in list(self.apis.values()):
            if now < state.hold_until:
                continue
            try:
                self._reconcile_api(state, now)
            except Exception as exc:
                self._step_failed(state, exc, now)
            else:
                if state.step_error is not None:
                    self._step_recovered(state)

    def _step_failed(self, state: ApiState, exc: Exception, now: float) -> None:
        state.step_failures += 1
        pause = min(MAX_BACKOFF, 0.5 * 2 ** (state.step_failures - 1))
        state.hold_until = now + pause
        message = f"the engine cannot run this API: {type(exc).__name__}: {exc}"
        version = state.version
        if state.step_error != message:
            log.exception("api '%s': reconcile failed", state.key)
            self._event(state.key, f"{message} (trying again in {pause:.1f}s, then less often)")
        state.step_error = message
        if version.error is None or version.error == message:
            version.error = message
            version.detail = "".join(traceback.format_exception(exc)).rstrip()
            self.sink.api_error(state.key, message)
        self._publish_status(state)

    def _step_recovered(self, state: ApiState) -> None:
        version = state.version
        if version.error == state.step_error:
            version.error, version.detail = None, ""
            self.sink.api_error(state.key, None)
        state.step_error = None
        state.step_failures = 0
        self._event(state.key, "the engine runs this API again")

    def _reconcile_api(self, state: ApiState, now: float) -> None:
        self._reap(state)
        self._watch_memory(state)
        compute = state.config.api.compute
        if state.deleting:
            state.desired = 0
        elif self.fixed_replicas is not None:
            state.desired = self.fixed_replicas
        else:
            state.autoscaler.observe(now, self.sink.in_flight(state.key))
            state.desired = state.autoscaler.recommend(
                now, state.desired, compute.min_replicas, compute.max_replicas
            )
        version = state.version
        if version.retry is not None and 0 < version.retry_at <= now and not state.deleting:
            version.retry_at = 0.0
            self._spawn(self._retry_fetch(state.key, version))
        blocked = version.spec is None or now < version.next_start
        room = 0 if blocked else self._room(state)
        views = [ReplicaView(r.id, r.version, r.ready) for r in state.replicas if not r.retired]
        draining = sum(r.retired for r in state.replicas)
        actions = plan(state.desired, version.id, views, room, draining, blocked)
        current = sum(r.version == version.id for r in state.replicas if not r.retired)
        replacing = any(r.version != version.id for r in state.replicas)
        state.unschedulable = (
            version.spec is not None
            and current + actions.start < state.desired
            and (now >= version.next_start)
            and not replacing  # a rollout making room one replica at a time
        )
        state.fit = current + actions.start if state.unschedulable else None
        # While old replicas go, the room they free is this API's: another API's autoscaler
        # taking it would leave this one with no replica at all.
        old = sum(r.version != version.id for r in state.replicas)
        placed = current + actions.start
        state.reserved = 0 if state.deleting else min(old, max(0, state.desired - placed))
        for _ in range(actions.start):
            self._start(state)
        for replica_id in actions.retire:
            self._retire(state, replica_id)
        if state.deleting and not state.replicas:
            del self.apis[state.key]
            return
        self._publish_status(state)
        self._report_compute(state)

    def _used(self, owner: ApiState | None = None) -> list[Need]:
        """What running replicas hold, and the room other APIs' rollouts have reserved."""
        used: list[Need] = []
        for other in self.apis.values():
            compute = other.config.api.compute
            # every replica still running holds its room: old versions' and draining ones too
            count = len(other.replicas) + (other.reserved if other is not owner else 0)
            used.extend([(compute.cpu_cores, compute.mem_bytes)] * count)
        return used

    def _room(self, state: ApiState) -> int:
        compute = state.config.api.compute
        return self.capacity.room(
            self._used(state), compute.cpu_cores, compute.mem_bytes, gpu_need(compute), gpu_claims(self.apis)
        )

    def _report_compute(self, state: ApiState) -> None:
        """While ``compute unavailable``, requests are refused at once with the reason."""
        reason = None
        if state.status == "compute unavailable" or state.fit is not None:
            compute = state.config.api.compute
            reason = self.capacity.shortfall(
                self._used(state),
                compute.cpu_cores,
                compute.mem_bytes,
                gpu_need(compute),
                gpu_claims(self.apis),
            )
        if state.status != "compute unavailable":  # capped, not stopped: say so in ``get`` only
            state.cap_reason, reason = reason, None
        if reason != state.compute_reason:
            state.compute_reason = reason
            self.sink.api_error(
                state.key, f"compute unavailable: {reason}" if reason else state.version.error
            )
            if reason:
                self._event(state.key, f"compute unavailable: {reason}")

    def _publish_status(self, state: ApiState) -> None:
        """Work out the API's status and tell the gateway now (a replica turning ready or failing
        says so at once, not at the next reconcile: /healthz, GET and `inferd get` agree)."""
        state.status = self._status(state)
        self.sink.api_status(state.key, state.status)

    def _status(self, state: ApiState) -> str:
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
        placed = sum(r.version == version.id and not r.retired for r in state.replicas)
        if state.unschedulable and placed < max(1, minimum):  # not even the minimum fits
            return "compute unavailable"
        return "updating" if state.desired > 0 else "pending"

    def _reap(self, state: ApiState) -> None:
        for replica in list(state.replicas):
            if replica.process.poll() is not None and replica.handle.state in (
                ReplicaState.CLOSED,
                ReplicaState.FAILED,
            ):
                state.replicas.remove(replica)
                version = state.version
                if replica.cgroup is not None:
                    if MemoryCaps.killed(replica.cgroup):
                        self._event(
                            state.key,
                            f"replica {replica.id} passed compute.mem_limit (the kernel stopped it)",
                        )
                        version.oom = version.oom or replica.version == version.id
                    MemoryCaps.release(replica.cgroup)
                if (
                    replica.died_loading
                    and replica.version == version.id
                    and not (version.error or version.oom)
                ):
                    code = replica.process.poll() or 0
                    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                    version.error = f"a replica {how} while loading the model and handler"
                    version.detail = version.error + f" (see `inferd logs {state.key}`)"
                    self.sink.api_error(state.key, version.error)

    def _watch_memory(self, state: ApiState) -> None:
        # compute.mem is a request (placement); only mem_limit caps, here when no cgroup does
        limit = state.config.api.compute.mem_limit_bytes
        if limit is None:
            return
        for replica in state.replicas:
            if (
                replica.cgroup is None
                and replica.process.poll() is None
                and rss_bytes(replica.process.pid) > limit
            ):
                self._event(state.key, f"replica {replica.id} used more than compute.mem_limit; stopping it")
                if replica.version == state.version.id:
                    state.version.oom = True
                replica.process.send_signal(signal.SIGKILL)

    def _start(self, state: ApiState) -> None:
        version = state.version
        assert version.spec is not None
        gpus = self.capacity.gpus.assign(gpu_claims(self.apis), gpu_need(state.config.api.compute))
        if gpus is None:
            return  # another API took the devices this tick
        replica_id = f"{state.config.name}-{next(self._ids)}"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spec = version.spec.model_copy(update={"replica_id": replica_id})
        # With a log folder, the output goes through a pipe into the API's rotated log;
        # without one (``inferd serve``) the replica writes on the terminal.
        pipe = os.pipe() if self.logs is not None else None
        write_fd = pipe[1] if pipe is not None else None
        env = dict(os.environ, **replica_environment(self.capacity.gpus, gpus))
        try:
            process: subprocess.Popen[bytes] | ForkedProcess | None = None
            if self.zygotes is not None and not gpus.devices:  # GPU replicas: a fresh CUDA
                outputs = (write_fd, write_fd) if write_fd is not None else (1, 2)
                fds = (theirs.fileno(), *outputs)
                process = self.zygotes.fork(state.config.api.model_format, fds, str(spec.project_root), env)
            if process is None:
                process = subprocess.Popen(
                    [sys.executable, "-m", "inferd.replica.worker", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    env=env,
                    cwd=str(spec.project_root),
                    stdin=subprocess.DEVNULL,
                    stdout=write_fd,
                    stderr=write_fd,
                )
        except OSError:
            ours.close()
            if pipe is not None:
                os.close(pipe[0])
            raise
        finally:
            theirs.close()
            if write_fd is not None:
                os.close(write_fd)
        greeting = messages.frame(messages.SPEC, spec.model_dump_json().encode())
        handle = ReplicaHandle(state.key, replica_id, version.id, self, greeting=greeting)
        loop = asyncio.get_running_loop()
        self._spawn(loop.connect_accepted_socket(lambda: handle, ours))
        if self.logs is not None and pipe is not None:
            self.logs.attach(state.key, replica_id, pipe[0])
        limit = state.config.api.compute.mem_limit_bytes
        if limit is not None and self.caps is None:
            self.caps = MemoryCaps()
        state.replicas.append(
            Replica(
                id=replica_id,
                version=version.id,
                handle=handle,
                process=process,
                gpus=gpus,
                uses=version.uses,
                cgroup=self.caps.confine(replica_id, process.pid, limit) if self.caps and limit else None,
            )
        )

    def _retire(self, state: ApiState, replica_id: str) -> None:
        for replica in state.replicas:
            if replica.id == replica_id and not replica.retired:
                replica.retired = True
                self.sink.replica_gone(state.key, replica.handle)
                replica.handle.close_when_idle()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _event(self, api: str, text: str, level: int = logging.INFO) -> None:
        log.log(level, "api '%s': %s", api, text)
        if self.logs is not None:
            self.logs.event(api, text)

    def _find(self, handle: ReplicaHandle) -> tuple[ApiState, Replica] | None:
        state = self.apis.get(handle.api)
        if state is None:
            return None
        for replica in state.replicas:
            if replica.handle is handle:
                return state, replica
        return None

    # ReplicaEvents

    def replica_ready(self, handle: ReplicaHandle) -> None:
        found = self._find(handle)
        if found is None or self._stopping or found[1].retired:
            handle.close()
            return
        state, replica = found
        replica.loaded = True
        if self.zygotes is not None and not replica.gpus.devices:
            # for the next replicas; started now, it does not slow the first one down
            self.zygotes.ensure(state.config.api.model_format)
        if replica.version == state.version.id:
            version = state.version
            version.failures = 0
            version.oom = False
            if version.error is not None:
                version.error = None
                self.sink.api_error(handle.api, None)
        self.sink.replica_ready(handle.api, handle)
        self._publish_status(state)

    def replica_failed(self, handle: ReplicaHandle, error: str, detail: str) -> None:
        found = self._find(handle)
        if found is None:
            return
        state, replica = found
        if replica.version == state.version.id:
            state.version.error = error
            state.version.detail = detail
            self.sink.api_error(handle.api, error)
            self._publish_status(state)

    def replica_closed(self, handle: ReplicaHandle) -> None:
        self.sink.replica_gone(handle.api, handle)
        found = self._find(handle)
        if found is None or self._stopping:
            return
        state, replica = found
        if replica.retired:
            return
        if replica.stuck:  # stopped on purpose: a request overran its timeout
            state.timed_out += 1
            return
        state.failed += 1
        if replica.version != state.version.id:
            return
        version = state.version
        now = time.monotonic()
        if now - replica.started > 60:  # it ran fine for a while: a fresh failure
            version.failures = 0
        version.failures += 1
        version.next_start = now + min(MAX_BACKOFF, 0.25 * 2 ** (version.failures - 1))
        if handle.state == ReplicaState.FAILED:
            return
        # Died while loading without saying why (os._exit, a signal, a crash in C): once reaped
        # (its exit code known), that is the version's error.
        replica.died_loading = not replica.loaded
        self._event(state.key, f"replica {replica.id} stopped unexpectedly; starting another")

    def replica_stuck(self, handle: ReplicaHandle) -> None:
        found = self._find(handle)
        if found is None:
            return
        state, replica = found
        replica.stuck = True
        self._event(state.key, f"replica {replica.id} overran a request's timeout; stopping and replacing it")
        self.sink.replica_gone(handle.api, handle)
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGKILL)

    # reading

    def in_use(self) -> set[Path]:
        """Files and folders the current versions and every running replica read (for GC)."""
        used: set[Path] = set()
        for state in self.apis.values():
            used.update(state.version.uses)
            for replica in state.replicas:
                used.update(replica.uses)
        return used

    def describe(self, name: str) -> dict[str, Any]:
        """Status and replica counts of one API (``inferd get``); ``name`` is its key."""
        state = self.apis[name]
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
            "in_flight": self.sink.in_flight(name),
            "last_update": state.last_update,
            "version": version.id,
            "error": version.error or state.compute_reason,
            "error_detail": version.detail or None,
            "warning": version.warning,
            "capacity": None
            if state.fit is None or state.cap_reason is None
            else {"fit": state.fit, "reason": state.cap_reason},
            "replicas": [replica_info(r, self.capacity.gpus) for r in state.replicas],
        }

    def replica_gpus(self) -> list[dict[str, Any]]:
        """Each GPU replica's devices with their utilisation and memory (for /metrics)."""
        return [
            {"api": api, "replica": replica, **vars(usage)}
            for api, replica, usage in replica_gpu_usage(self.apis, self.capacity.gpus)
        ]

    def replica_states(self) -> dict[str, dict[str, int]]:
        """Replica counts by state per API (for /metrics)."""
        result: dict[str, dict[str, int]] = {}
        for name, state in self.apis.items():
            counts: dict[str, int] = {}
            for replica in state.replicas:
                key = "retiring" if replica.retired else str(replica.handle.state)
                counts[key] = counts.get(key, 0) + 1
            result[name] = counts
        return result

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
        if self.zygotes is not None:
            self.zygotes.close()
        if self.logs is not None:
            self.logs.close()
