"""The local engine: replica processes on this machine, connected to the gateway by socketpairs.

A reconcile loop keeps each API at the count the autoscaler wants, rolls new versions in
before retiring old ones, replaces replicas that die (backing off while they keep failing),
and stops replicas that outgrow ``compute.mem``. This module is the orchestration; its parts
live beside it: making a version ready before it rolls out (``prepare``) and what deploying
it makes of the API's state (``state``), each API's step decided (``schedule``), where replicas
fit and why they do not (``placement``), starting one replica process (``launch``) and
numbering it (``replica_ids``), what a replica reports (``replica_events``), meeting failures
(``failures``) and what the engine tells about its APIs (``report``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from inferd.config.schema import ApiConfig, Project, SplitterConfig
from inferd.engine import failures, placement, priority, report, schedule
from inferd.engine.capacity import Capacity
from inferd.engine.gpus import gpu_need, replica_environment
from inferd.engine.launch import start_replica
from inferd.engine.memlimit import MemoryCaps
from inferd.engine.models import retry_delay
from inferd.engine.output import ApiLogs, forward
from inferd.engine.prepare import prepare
from inferd.engine.replica_events import LocalReplicaEvents, publish_status
from inferd.engine.replica_ids import IDS_FILE, ReplicaIds
from inferd.engine.state import ApiState, Replica, Version, deployed, gpu_claims
from inferd.engine.zygotes import Zygotes, enabled
from inferd.replica import messages
from inferd.replica.handle import ReplicaHandle
from inferd.storage import project_digest
from inferd.types import ReplicaSink

log = logging.getLogger("inferd.engine")

RECONCILE_SECONDS = 0.25
STOP_TIMEOUT = 10.0


class LocalEngine:
    """Starts, watches and stops replica processes; their events go to ``LocalReplicaEvents``."""

    def __init__(
        self,
        sink: ReplicaSink,
        home: Path,
        log_dir: Path | None = None,
        fixed_replicas: int | None = None,
        console: Callable[[str], None] | None = None,
    ) -> None:
        # console: without a log folder, where what replicas print goes (``inferd serve``'s
        # terminal, which must never block them); with neither, they write on this process's own
        # fixed_replicas: exactly that many per API, autoscaling off (``inferd serve --replicas``,
        # what an exported Kubernetes pod runs while the HorizontalPodAutoscaler scales pods)
        self.fixed_replicas = fixed_replicas
        self.sink = sink
        self.home = home
        self.log_dir = log_dir
        self.logs = ApiLogs(log_dir) if log_dir is not None else None
        self.console = console
        self.caps: MemoryCaps | None = None  # made when an API first asks for mem_limit
        self.capacity = Capacity.of_this_machine()
        self.apis: dict[str, ApiState] = {}
        self.sources: dict[str, Path] = {}  # deployment -> the user's folder it was deployed from
        self.priorities = priority.Priorities()  # shadows' replicas yield the CPU
        self._ids = ReplicaIds(home / IDS_FILE if log_dir is not None else None)
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()  # reconcile now, not at the next tick
        self.zygotes = Zygotes(on_change=self._wake.set) if enabled() else None
        # what is done when a replica turns ready, fails, closes or overruns a timeout
        self.events = LocalReplicaEvents(self.apis, sink, self.zygotes, self._event)

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
        # The config file is left out: each API's own block is in its version already, so an
        # edit of another API, or of a splitter's weights, does not restart this one.
        digest = await asyncio.to_thread(project_digest, project.root, {project.config_file})
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
            self.apis[config.key] = deployed(state, version, self.fixed_replicas)
            self.sink.add_api(config, environ)
            self.sink.api_error(config.key, version.error)
            self._event(config.key, f"version {version.id} {results[config.name]}")
        keep = {config.key for config in project.apis}
        self.delete(
            *(
                name
                for name, state in list(self.apis.items())
                if state.config.deployment == project.deployment.name and name not in keep
            )
        )
        self.set_splitters(project.deployment.name, project.splitters)
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._reconcile_forever())
        self.reconcile()
        return results

    async def _prepare(
        self, config: ApiConfig, root: Path, digest: str, refresh: str, relax: bool = False
    ) -> Version:
        return await prepare(
            config, root, digest, refresh, relax, home=self.home, sources=self.sources, event=self._event
        )

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
        state.updated()
        self.sink.api_error(name, None)
        self._event(name, f"the model's origin answered again: version {fresh.id} created")
        self.reconcile()

    def set_splitters(self, deployment: str, splitters: tuple[SplitterConfig, ...]) -> None:
        """Route ``deployment``'s splitters with these weights (a deploy's, or a promote's): in
        the gateway, and in the replicas' priorities (an API clients are sent to is no shadow)."""
        self.sink.set_splitters(deployment, splitters)
        self.priorities.update(deployment, splitters, self.apis)
        self._replace_kept_low()

    def delete(self, *names: str) -> None:
        """Stop routing to APIs ``names`` (their keys) now; their replicas finish their requests,
        then stop. A deployment's APIs are deleted at once: the replicas' priorities are settled
        once for all (once an API, a deployment of 1,000 took over a second of the event loop)."""
        deleted = []
        for name in names:
            state = self.apis.get(name)
            if state is None:
                continue
            state.deleting = True
            state.status = "stopping"  # said at once (report.status), not at the next reconcile
            state.updated()
            self.sink.remove_api(name)
            # Retired now, not at the next reconcile: a deploy before it would keep them as the new
            # version's replicas, ready, though the gateway's fresh queue for the API has none of
            # them (its requests waited for a replica that never came).
            for replica in list(state.replicas):
                self._retire(state, replica.id)
            deleted.append(name)
        if not deleted:
            return
        self.priorities.refresh(self.apis)  # their shadows are no longer ones
        for name in deleted:
            self._event(name, "deleted")
        self._replace_kept_low()

    # the loop

    async def _reconcile_forever(self) -> None:
        while not self._stopping:
            try:
                self.reconcile()
            except Exception:  # never let one bad tick stop the control loop
                log.exception("reconcile failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECONCILE_SECONDS)
            self._wake.clear()

    def reconcile(self) -> None:
        """One control step: reap, watch memory, autoscale, start and retire replicas.

        A step that fails for one API (a replica that cannot be started: no memory, too many
        open files) becomes that API's ``error`` with the reason, and the API is left alone for
        a growing pause; the other APIs carry on.
        """
        now = time.monotonic()
        ledger = placement.Ledger(self.apis)  # what every API holds, added up once a tick
        for state in list(self.apis.values()):
            if now < state.hold_until:
                continue
            try:
                self._reconcile_api(state, now, ledger)
            except Exception as exc:
                failures.step_failed(state, exc, now, self.sink, self._event)
                publish_status(state, self.sink)
            else:
                if state.step_error is not None:
                    failures.step_recovered(state, self.sink, self._event)
            ledger.refresh(state)
        if self.zygotes is not None:  # deleted, or updated to another runtime: once its replicas are gone
            self.zygotes.keep_only(report.runtimes_in_use(self.apis))
        self.priorities.settle(self.apis)
        self._replace_kept_low()

    def _replace_kept_low(self) -> None:
        """Say the replicas that were a shadow's and may not be raised back to inferd's priority (a
        user's operator has no CAP_SYS_NICE): each is replaced, as in a rolling update, by one
        started in free room, and serves until that one is ready (reconcile.py)."""
        kept, self.priorities.kept_low = self.priorities.kept_low, []
        for key, replica in kept:
            self._event(
                key,
                f"replica {replica.id} keeps the shadow's lower CPU priority (raising it back needs "
                "CAP_SYS_NICE); replacing it with one at full priority once there is room for one",
            )
        if kept:
            self._wake.set()

    def _reconcile_api(self, state: ApiState, now: float, ledger: placement.Ledger) -> None:
        state.deferred = 0
        for lost in failures.reap(state, self.sink, self._event):
            # an old version's replica died while it serves (nothing else does, or the new version
            # failed): start one like it
            if lost.source is not None and lost.source.spec is not None and not state.deleting:
                self._event(
                    state.key, f"starting another replica of version {lost.version} in {lost.id}'s place"
                )
                self._start(state, like=lost.source)
        failures.watch_memory(state, self._event)
        failures.end_lingering(state, self._event, now)
        arrivals, state.arrivals = state.arrivals, self.sink.arrivals(state.key)
        state.desired = schedule.desired(
            state,
            now,
            self.sink.load(state.key),
            arrivals != state.arrivals,
            self.fixed_replicas,
            self.capacity,
            self.apis,
            self.priorities.targets,
        )
        failures.at_rest(state, self.sink)
        version = state.version
        if version.retry is not None and 0 < version.retry_at <= now and not state.deleting:
            version.retry_at = 0.0
            self._spawn(self._retry_fetch(state.key, version))
        actions = schedule.step(state, now, self.capacity, self.apis, ledger)
        for _ in range(actions.start):
            self._start(state)
        for replica_id in actions.retire:
            self._retire(state, replica_id)
        if state.deleting and not state.replicas:
            del self.apis[state.key]
            if self.logs is not None:
                self.logs.forget(state.key)
            return
        publish_status(state, self.sink)
        placement.report_shortfall(state, ledger, self.capacity, self.apis, self.sink, self._event)

    def _start(self, state: ApiState, like: Version | None = None) -> None:
        version = like or state.version
        assert version.spec is not None
        gpus = self.capacity.gpus.assign(gpu_claims(self.apis), gpu_need(state.config.api.compute))
        if gpus is None:
            return  # another API took the devices this tick
        # GPU replicas are not forked: each needs a fresh CUDA.
        zygotes = self.zygotes if not gpus.devices else None
        if zygotes is not None and zygotes.warming(state.config.api.model_format):
            state.deferred += 1  # started once the zygote has imported what it would import
            return
        replica_id = f"{state.config.name}-{self._ids.take()}"
        spec = version.spec.model_copy(update={"replica_id": replica_id, "repeat_of": version.error})
        env = dict(os.environ, **replica_environment(self.capacity.gpus, gpus))
        # With a log folder, the output goes through a pipe into the API's rotated log; without
        # one (``inferd serve``) through a pipe onto the console.
        piped = self.logs is not None or self.console is not None
        process, ours, output = start_replica(
            spec.project_root, state.config.api.model_format, env, zygotes, piped=piped
        )
        greeting = messages.frame(messages.SPEC, spec.to_json())
        handle = ReplicaHandle(state.key, replica_id, version.id, self.events, greeting=greeting)
        loop = asyncio.get_running_loop()
        self._spawn(loop.connect_accepted_socket(lambda: handle, ours))
        if self.logs is not None and output is not None:
            self.logs.attach(state.key, replica_id, output)
        elif self.console is not None and output is not None:
            forward(output, self.console)
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
                source=version,
                cgroup=self.caps.confine(replica_id, process.pid, limit) if self.caps and limit else None,
            )
        )
        self.priorities.apply(state.key, state.replicas[-1])

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

    # reading

    def in_use(self) -> set[Path]:
        """Files and folders the current versions and every running replica read (for GC)."""
        return report.in_use(self.apis)

    def describe(self, name: str) -> dict[str, Any]:
        """Status and replica counts of one API (``inferd get``); ``name`` is its key."""
        return report.describe(self.apis[name], self.sink.in_flight(name), self.capacity.gpus)

    def replica_gpus(self) -> list[dict[str, Any]]:
        """Each GPU replica's devices with their utilisation and memory (for /metrics)."""
        return report.replica_gpus(self.apis, self.capacity.gpus)

    def replica_states(self) -> dict[str, dict[str, int]]:
        """Replica counts by state per API (for /metrics)."""
        return report.replica_states(self.apis)

    # shutdown

    async def stop(self) -> None:
        """Close every replica's socket, wait for the processes, kill the stragglers."""
        self._stopping = self.events.stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        replicas = [r for state in self.apis.values() for r in state.replicas]
        for replica in replicas:
            self.sink.replica_gone(replica.handle.api, replica.handle)
            replica.handle.close()
            if not replica.loaded and replica.process.poll() is None:
                # still importing or loading (TensorFlow: tens of seconds): it holds no request,
                # and waiting for it kept Ctrl-C of `inferd serve` (and `inferd down`) waiting
                replica.process.kill()
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
