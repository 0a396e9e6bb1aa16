"""The APIs the gateway serves, as an engine tells it (``inferd.types.ReplicaSink``): their
queues by key, endpoint and protocol model name, their replicas, statuses and errors, which of
them a listing shows, and whether all of them are ready.

``ApiTable`` is the gateway's base (``gateway/app.py``), which routes requests to these queues.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from inferd import codec
from inferd.config.schema import ApiConfig, SplitterConfig
from inferd.gateway import auth
from inferd.gateway.queue import ApiQueue
from inferd.gateway.traffic import Splitters
from inferd.replica.handle import ReplicaHandle, ReplicaState

if TYPE_CHECKING:
    from inferd.gateway.access import AccessLog
    from inferd.gateway.shadow import Shadows

SHOWN_ENDPOINTS = 10  # a 404 names this many endpoints at most, the nearest to the path asked


def endpoints_hint(path: str, endpoints: Iterable[str]) -> str:
    """What a 404 for ``path`` says exists: every endpoint while there are few, else the nearest
    (longest prefix in common with ``path``) and where the rest are listed (a gateway serving 81
    APIs answered a typo with 2 KB naming all 81)."""
    known = sorted(endpoints)
    if len(known) <= SHOWN_ENDPOINTS:
        return f"endpoints: {', '.join(known) or 'none'}"
    nearest = heapq.nsmallest(SHOWN_ENDPOINTS, known, key=lambda e: (-_shared(path, e), e))
    return f"{len(known)} endpoints, the nearest: {', '.join(nearest)}; GET / lists them all"


def _shared(one: str, other: str) -> int:
    """How many characters the two strings start with alike (a typo's place in the path)."""
    for index, (a, b) in enumerate(zip(one, other, strict=False)):
        if a != b:
            return index
    return min(len(one), len(other))


class ApiTable:
    """The APIs by key, endpoint and model name; implements ``inferd.types.ReplicaSink``."""

    # kept by the gateway (gateway/app.py)
    access_log: AccessLog | None
    shadows: Shadows
    draining: bool

    def __init__(self) -> None:
        self.apis: dict[str, ApiQueue] = {}  # by key, ``deployment/api``
        self.endpoints: dict[bytes, ApiQueue] = {}
        # V2 / TF Serving model names: ``deployment.api`` always, the bare name when unique.
        self.models: dict[str, ApiQueue] = {}
        self.clashes: dict[str, list[str]] = {}
        # Each API name's queues (one per deployment that has it): an API added or removed
        # names again only those of its name (the whole table was, once per API, and a
        # deployment of 1,000 APIs deleted held the event loop over a second).
        self._by_name: dict[str, list[ApiQueue]] = {}
        # Traffic splitters (gateway/traffic.py): looked at only when a path names no API.
        self.splitters = Splitters()
        # APIs the project being served will have: not ready until they exist and are ready.
        self.expected: set[str] = set()
        # Why APIs may still be on their way (a restarted operator restoring its deployments, a
        # server setting its project up): a path no API answers yet may be one of theirs, so it
        # is a 503 to retry, not a 404 that says the API does not exist.
        self.starting: str | None = None
        # Deleted APIs' queues while their replicas still run requests: the sweep expires those
        # too, so a request stuck past its timeout stops its replica (the drain would never end).
        self.removed: list[ApiQueue] = []

    # ReplicaSink (called by the engine)

    def add_api(self, config: ApiConfig, environ: Mapping[str, str] | None = None) -> None:
        queue = self.apis.get(config.key)
        if queue is None:
            queue = ApiQueue(config)
            self.apis[config.key] = queue
            self._by_name.setdefault(queue.api_name, []).append(queue)
            self.models[queue.model_name] = queue
        else:
            self._unroute(queue)
            queue.configure(config)
        queue.shadow = self.shadows.route(config.key, config.deployment, config.api.shadow)
        queue.observed = bool(queue.sample) or queue.shadow is not None
        self.endpoints[config.endpoint.encode()] = queue
        queue.keys, queue.auth_error = [], None
        if config.api.auth is not None:
            try:
                queue.keys = auth.load_keys(config, environ)
            except auth.KeysError as exc:
                queue.auth_error = str(exc)
        self._index_name(queue.api_name)

    def set_splitters(self, deployment: str, configs: tuple[SplitterConfig, ...]) -> None:
        """Make ``configs`` the traffic splitters of ``deployment`` (a redeploy swaps them at once)."""
        self.splitters.replace(deployment, configs)
        for key, splitter in self.splitters.by_key.items():
            if splitter.config.deployment == deployment:
                splitter.shadow = self.shadows.route(key, deployment, splitter.config.splitter.shadow)
        for source in [s for s in self.shadows.routes if s.partition("/")[0] == deployment]:
            if source not in self.apis and source not in self.splitters.by_key:
                self.shadows.forget(source)

    def expect(self, names: list[str]) -> None:
        """The APIs about to be created (their keys): readiness waits for them (set before
        installing anything)."""
        self.expected.update(names)

    def remove_api(self, name: str) -> None:
        self.expected.discard(name)
        queue = self.apis.pop(name, None)
        if queue is not None:
            self.shadows.forget(name)
            self._unroute(queue)
            named = self._by_name.get(queue.api_name, [])
            if queue in named:
                named.remove(queue)
            self.models.pop(queue.model_name, None)
            self._index_name(queue.api_name)
            queue.fail_waiting(404, codec.error_body(f"api '{name}' was deleted"))
            if queue.busy:
                self.removed.append(queue)
            if self.access_log is not None:
                self.access_log.forget(name)

    def _unroute(self, queue: ApiQueue) -> None:
        """Take ``queue``'s endpoint out of the routes, unless another API has it now: an API
        renamed in a deploy keeps its endpoint (the new one takes it before the old one goes),
        and two APIs may swap theirs."""
        endpoint = queue.endpoint.encode()
        if self.endpoints.get(endpoint) is queue:
            del self.endpoints[endpoint]

    def _index_name(self, name: str) -> None:
        """The protocol model names of the APIs called ``name``: the bare name for the only one,
        ``deployment.api`` for each while several deployments have one (``clashes``)."""
        queues = self._by_name.get(name) or []
        self.models.pop(name, None)
        self.clashes.pop(name, None)
        if not queues:
            self._by_name.pop(name, None)
        elif len(queues) == 1:
            self.models[name] = queues[0]
        else:
            self.clashes[name] = sorted(queue.model_name for queue in queues)
        for queue in queues:
            queue.name = name if len(queues) == 1 else queue.key

    def model_name(self, queue: ApiQueue) -> str:
        """The API's protocol model name in listings: its bare name when unique, else ``deployment.api``."""
        return queue.api_name if queue.api_name not in self.clashes else queue.model_name

    def not_found(self, message: str) -> tuple[int, bytes]:
        """Status and body for a route or model that no API answers (now)."""
        if self.starting is not None:
            return 503, codec.error_body(f"{message}; {self.starting}: retry it")
        return 404, codec.error_body(message)

    def unknown_model(self, name: str) -> str:
        """Why no API answers to model ``name`` (an unknown name, or one several deployments use)."""
        clashes = self.clashes.get(name) or self.splitters.clashes.get(name)
        if clashes:
            return f"model '{name}' is ambiguous: name one of {', '.join(clashes)}"
        return f"model '{name}' is not found"

    def replica_ready(self, api: str, handle: ReplicaHandle) -> None:
        queue = self.apis.get(api)
        if queue is not None:
            queue.info = handle.info
            queue.add(handle)

    def replica_gone(self, api: str, handle: ReplicaHandle) -> None:
        queue = self.apis.get(api)
        if queue is not None:
            queue.remove(handle)

    def api_error(self, api: str, reason: str | None) -> None:
        queue = self.apis.get(api)
        if queue is None:
            return
        queue.error = reason
        if reason is not None and not queue.ready:
            queue.fail_waiting(503, codec.error_body(f"api '{queue.name}' is not ready: {reason}"))

    def api_status(self, api: str, status: str) -> None:
        queue = self.apis.get(api)
        if queue is not None:
            queue.status = status

    def in_flight(self, api: str) -> int:
        queue = self.apis.get(api)
        return 0 if queue is None else queue.in_flight

    def load(self, api: str) -> int:
        queue = self.apis.get(api)
        return 0 if queue is None else queue.load

    def arrivals(self, api: str) -> int:
        queue = self.apis.get(api)
        return 0 if queue is None else queue.arrivals

    def total_in_flight(self) -> int:
        """Requests queued or running, a deleted API's still running on its draining replicas too
        (a drain that left them out stopped their replicas under them)."""
        return sum(queue.in_flight for queue in [*self.apis.values(), *self.removed])

    # listings and readiness (called by routes)

    def visible(self, headers: dict[bytes, bytes]) -> list[ApiQueue]:
        """The APIs a listing shows: an API with ``auth`` only to a holder of one of its keys."""
        return [
            queue
            for queue in self.apis.values()
            if queue.config.api.auth is None or (queue.keys and auth.check(headers, queue.keys) is None)
        ]

    def describe(self, queue: ApiQueue, brief: bool = False) -> dict[str, Any]:
        """What ``GET <endpoint>`` answers: status, replicas and the signature."""
        ready = sum(h.state == ReplicaState.READY for h in queue.replicas)
        status = queue.status or ("live" if ready else ("error" if queue.error else "updating"))
        info: dict[str, Any] = {
            "name": queue.api_name,
            "deployment": queue.config.deployment,
            "endpoint": queue.endpoint,
            "status": status,
        }
        if brief:
            return info
        info["replicas"] = {"ready": ready, "busy": queue.running, "queued": len(queue.waiting)}
        if queue.error:
            info["error"] = queue.error
        signature = queue.info
        info["model_format"] = signature.get("model_format", queue.config.api.model_format)
        info["signature"] = {
            key: signature[key]
            for key in ("inputs", "outputs", "signature_key", "signature_def")
            if key in signature
        }
        return info

    @property
    def ready(self) -> bool:
        """Every API that must have a replica has a ready one, and the server is not stopping."""
        return not self.draining and not self.not_ready()

    def not_ready(self) -> list[str]:
        """APIs that would answer 404 or 503 now: expected but not created yet, or with no ready replica."""
        # An API scaled to zero (min_replicas: 0) starts a replica at its first request.
        waiting = {
            q.name for q in self.apis.values() if not q.ready and q.config.api.compute.min_replicas > 0
        }
        names = [q.api_name for q in self.apis.values()]
        for key in self.expected:
            if key not in self.apis:
                name = key.rpartition("/")[2]
                waiting.add(key if name in names else name)
        return sorted(waiting)
