"""The background operator: gateway + local engine + an admin API for the CLI.

``Operator`` owns the process's lifecycle (listen, restore the recorded deployments, drain and
stop) and the operations the CLI asks for (get, prune; deploy and delete are ``deploy.py``'s and
``delete.py``'s). The admin API's routes that call them are in ``admin.py``; it listens on
loopback only, on a port of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from inferd import __version__
from inferd.code_identity import code_identity
from inferd.engine.local import LocalEngine
from inferd.errors import ConflictError, NotFoundError, in_several_deployments, shown
from inferd.gateway.access import AccessLog
from inferd.gateway.app import Gateway
from inferd.gateway.edge import EdgeLimits
from inferd.gateway.http import HttpConnection
from inferd.gateway.queue import ApiQueue
from inferd.gateway.wire import replay_mark
from inferd.operator import heap
from inferd.operator.admin import AdminApp
from inferd.operator.dashboard import Dashboard
from inferd.operator.endpoints import Claims
from inferd.operator.locks import DeploymentLocks
from inferd.operator.payloads import PayloadWriter
from inferd.operator.prune import Collector, forget_apis
from inferd.operator.restore import restore_all
from inferd.operator.state import (
    OPERATOR_FILE,
    STATE_FORMAT,
    TOKEN_FILE,
    State,
    keep_files,
    new_token,
    write_small,
)
from inferd.operator.supervision import keep_supervised, mark_stopping
from inferd.operator.watchdog import keep_beating, stop_beating

log = logging.getLogger("inferd.operator")

ADMIN_HOST = "127.0.0.1"
DRAIN_GRACE = 30.0
SERVING_PERIOD = 1.0  # how soon a deployment all live on its newest version is what a restart brings back


class Operator:
    """Everything the local operator process runs."""

    def __init__(self, home: Path, host: str, port: int) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.access_log = AccessLog(folder=home / "logs")
        self.gateway = Gateway(access_log=self.access_log, limits=EdgeLimits.from_env())
        self.engine = LocalEngine(self.gateway, home=home, log_dir=home / "logs")
        self.gateway.replica_states = self.engine.replica_states
        self.gateway.replica_gpus = self.engine.replica_gpus
        self.state = State(home)
        self.token = new_token()
        self.gateway.shadows.replay_mark = replay_mark(self.token)  # ``inferd replay``'s requests
        self.stop_event = asyncio.Event()
        self.admin = AdminApp(self)
        self.dashboard = Dashboard(self)
        self.locks = DeploymentLocks()  # a deploy's, a delete's: what each deploy deploys
        self.claims = Claims()  # the endpoints of the deploys (and restores) in progress
        self.started = time.time()
        self.code = code_identity()  # as the files were when this process loaded its code
        self.restoring = True
        # set as each recorded deployment is brought back: a deploy or delete of it waits for that
        self.restored: dict[str, asyncio.Event] = {}
        self.unrestored: dict[str, str] = {}  # deployment -> why it could not be restored
        self.collector = Collector(home, self.kept, self.busy)
        self.payload_writer = PayloadWriter(home, self.gateway.payloads)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT or ``inferd down``; then drain and stop everything."""
        self.state.load()
        self.restored = {name: asyncio.Event() for name in self.state.deployments}
        if self.state.deployments:  # until they are back, a request for one is a 503, not a 404
            self.gateway.starting = "the operator is restoring its deployments after a restart"
        await self.gateway.start(self.host, self.port)
        loop = asyncio.get_running_loop()
        admin_port = await self.admin.listen(
            "the admin API", ADMIN_HOST, 0, lambda: HttpConnection(self.admin)
        )
        dashboard_url = await self.dashboard.start()
        self.gateway.sweep_also(self.admin, self.dashboard)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop_event.set)
        write_small(self.home / TOKEN_FILE, self.token)
        info = {
            "pid": os.getpid(),
            "admin_port": admin_port,
            "gateway": self.gateway_url,
            "version": __version__,
            # the inferd code this process runs: the CLI compares it with its own (an upgrade)
            "code": self.code,
            "prefix": sys.prefix,  # its Python environment: another venv's CLI names it
            "state_format": STATE_FORMAT,  # an older CLI does not restart it (it could not read it)
            "started": self.started,
            "dashboard": dashboard_url,
            # the process that restarts this one if it dies (``inferd.operator.supervisor``)
            "supervisor": int(os.environ.get("INFERD_SUPERVISOR", "0")) or None,
        }
        described = orjson.dumps(info).decode()
        write_small(self.home / OPERATOR_FILE, described)
        beating = loop.create_task(keep_beating(self.home))  # its supervisor restarts it if it hangs
        log.info(
            "operator %d: gateway on %s, admin on %s:%d",
            os.getpid(),
            self.gateway_url,
            ADMIN_HOST,
            admin_port,
        )
        # (cut short: nothing is collected or recorded as serving, as while it ran)
        self.restoring = not await self._restored_unless_stopped()
        self.gateway.starting = None
        heap.settle()
        self.collector.tidy()
        collecting = loop.create_task(self.collector.run_forever())
        payloads = loop.create_task(self.payload_writer.run_forever())
        kept = {OPERATOR_FILE: described, TOKEN_FILE: self.token}
        keeping = loop.create_task(keep_files(self.home, kept))
        supervised = loop.create_task(keep_supervised(self.home, info, kept))
        noting = loop.create_task(self._note_serving_forever())
        await self.stop_event.wait()
        collecting.cancel()
        keeping.cancel()
        supervised.cancel()
        noting.cancel()
        mark_stopping(self.home, info, kept)
        log.info("stopping: draining requests")
        await self.gateway.drain(DRAIN_GRACE)
        await self.engine.stop()
        await self.gateway.close()
        payloads.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await payloads
        self.access_log.flush()
        await self.dashboard.stop()
        self.admin.stop_listening()
        beating.cancel()
        stop_beating(self.home)
        (self.home / OPERATOR_FILE).unlink(missing_ok=True)
        log.info("stopped")
        return 0

    @property
    def gateway_url(self) -> str:
        ports = self.gateway.ports
        return f"http://{self.host}:{ports[0] if ports else self.port}"

    async def restore(self) -> None:
        """Bring back every deployment recorded in the state (``operator/restore.py``)."""
        await restore_all(self.state, self.engine, self.gateway, self.restored, self.unrestored, self.claims)

    async def _restored_unless_stopped(self) -> bool:
        """``restore``, cut short by `inferd down` (or a signal): it waited for the restore, a
        model download minutes long, then started the APIs to stop them. True when it ended."""
        restoring = asyncio.ensure_future(self.restore())
        stopping = asyncio.ensure_future(self.stop_event.wait())
        await asyncio.wait((restoring, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if restoring.done():
            restoring.result()
            return True
        log.info("stopping: the restore of the deployments is cut short")
        restoring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await restoring
        return False

    async def restored_first(self, deployment: str) -> None:
        """Wait until ``deployment`` is back, if the operator is bringing it back: a deploy or a
        delete that went first would be undone by its restore."""
        event = self.restored.get(deployment)
        if event is not None and not event.is_set():
            log.info("deployment '%s': waiting for its restore to finish", deployment)
            await event.wait()

    # admin operations

    def note_serving(self) -> None:
        """Each deployment whose APIs are all live on their newest version serves its snapshot."""
        if self.restoring:
            return
        for name, record in self.state.deployments.items():
            if record.serving == record.snapshot:
                continue  # (the common case, each second: nothing to look at)
            apis = self.engine.apis.items()
            keys = [key for key, api in apis if api.config.deployment == name and not api.deleting]
            if keys and all(self.engine.describe(key)["status"] == "live" for key in keys):
                record.serving = record.snapshot
                self.state.save()

    async def _note_serving_forever(self) -> None:
        """Record a deployment's snapshot as the one serving soon after its update goes live: a
        restart before then brought the version it replaced back first (its replicas answered
        with the old code until the newest was rolled out again)."""
        while True:
            await asyncio.sleep(SERVING_PERIOD)
            try:
                self.note_serving()
            except Exception:  # a bug of ours must not end the loop
                log.exception("recording the versions that serve failed")

    def kept(self) -> set[Path]:
        """What the garbage collection keeps: running versions, and each API's previous one."""
        self.note_serving()  # (once a minute, and after each deploy and delete)
        paths = self.engine.in_use()
        for record in self.state.deployments.values():
            paths.update(record.kept())
        return paths

    def busy(self) -> bool:
        return self.restoring or self.locks.any_locked()

    async def prune(self) -> dict[str, Any]:
        result = await self.collector.collect_now()
        if result is None:
            raise ConflictError("a deploy is in progress; prune again when it is done")
        await self.payload_writer.release(set(self.engine.apis))  # a deleted API's: removed now
        result.add(forget_apis(self.home, set(self.state.deployments), set(self.engine.apis)))
        return {"message": result.summary(), "freed": result.freed, "removed": result.removed}

    def resolve(self, name: str, deleting: bool = True) -> str:
        """The key of the API that ``name`` names: ``DEPLOYMENT/API``, or an ``API`` name that
        only one deployment uses (APIs being deleted count only when nothing else matches)."""
        apis = self.engine.apis
        if "/" in name:
            if name in apis and (deleting or not apis[name].deleting):
                return name
            raise NotFoundError(f"no API named {shown(name)}")
        matches = sorted(key for key, state in apis.items() if state.config.name == name)
        live = [key for key in matches if not apis[key].deleting]
        matches = live or (matches if deleting else [])
        if len(matches) > 1:
            raise in_several_deployments("api", name, matches)
        if not matches:
            raise NotFoundError(f"no API named {shown(name)}")
        return matches[0]

    def api_list(self) -> list[dict[str, Any]]:
        """Every API, but those of a deployment a restart is still bringing back: its APIs come
        back one at a time, and a deploy beside them (the Python client's) took the ones not
        back yet for deleted and dropped them. ``/info`` names it as ``restoring``."""
        restoring = {name for name, done in self.restored.items() if not done.is_set()}
        return [
            self.api_info(key, brief=True)
            for key, state in sorted(self.engine.apis.items())
            if state.config.deployment not in restoring
        ]

    def api_info(self, name: str, brief: bool = False) -> dict[str, Any]:
        """``inferd get API``: ``name`` is ``DEPLOYMENT/API``, or an API name unique on the operator."""
        key = self.resolve(name)
        info = self.engine.describe(key)
        info["key"] = key
        info["url"] = self.gateway_url + info["endpoint"]
        queue: ApiQueue | None = self.gateway.apis.get(key)
        if not brief:
            state = self.engine.apis[key]
            info["config"] = state.config.api.shown()
            info["metrics"] = queue.stats.summary() if queue else None
            info["signature"] = self.gateway.describe(queue)["signature"] if queue else {}
            info["tracker"] = state.config.api.tracker.model_dump() if state.config.api.tracker else None
            auth = state.config.api.auth
            if auth is not None:  # for the curl lines: the key as the deploying shell names it
                variable = auth.keys_from_env[0] if auth.keys_from_env else "KEY"
                info["key_header"] = f"Authorization: Bearer ${variable}"
            route = self.gateway.shadows.routes.get(key)
            info["shadow"] = route.describe() if route is not None else None
        return info
