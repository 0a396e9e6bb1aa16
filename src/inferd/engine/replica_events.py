"""What the local engine does when one of its replicas reports (``ReplicaEvents``, called by
the replica's ``ReplicaHandle`` on the event loop): ready, failed to load, closed, lost, or
overran a request's timeout. Each updates the engine's state (``engine.state``) and tells the
gateway at once, not at the next reconcile.
"""

from __future__ import annotations

import signal
import time

from inferd.engine import failures
from inferd.engine.output import Events
from inferd.engine.report import status
from inferd.engine.state import ApiState, Replica
from inferd.engine.zygotes import Zygotes
from inferd.replica.handle import ReplicaHandle, ReplicaState
from inferd.types import ReplicaSink


def publish_status(state: ApiState, sink: ReplicaSink) -> None:
    """Work out the API's status and tell the gateway now (a replica turning ready or failing
    says so at once, not at the next reconcile: /healthz, GET and `inferd get` agree)."""
    state.status = status(state)
    sink.api_status(state.key, state.status)


class LocalReplicaEvents:
    """The ``ReplicaEvents`` of the local engine's replicas (``engine/local.py``)."""

    def __init__(
        self,
        apis: dict[str, ApiState],
        sink: ReplicaSink,
        zygotes: Zygotes | None,
        event: Events,
    ) -> None:
        self.apis = apis  # the engine's, by API key
        self.sink = sink
        self.zygotes = zygotes
        self._event = event
        self.stopping = False  # the engine stops: no replica is counted ready any more

    def _find(self, handle: ReplicaHandle) -> tuple[ApiState, Replica] | None:
        state = self.apis.get(handle.api)
        if state is None:
            return None
        for replica in state.replicas:
            if replica.handle is handle:
                return state, replica
        return None

    def replica_ready(self, handle: ReplicaHandle) -> None:
        found = self._find(handle)
        if found is None or self.stopping or found[1].retired:
            handle.close()
            return
        state, replica = found
        if failures.stop_if_over_limit(state, replica, self._event):
            return  # never counted ready: it closes, and is reported as out of memory
        replica.loaded = True
        if self.zygotes is not None and not replica.gpus.devices:
            # a zygote that died is started again, for the next replicas
            self.zygotes.ensure(state.config.api.model_format)
        if replica.version == state.version.id:
            version = state.version
            # (failures stay counted: a replica that crashes soon after it is ready backs off too;
            # one that ran well for a minute starts the count again, failures.crashed)
            version.oom = False
            if version.error is not None:
                version.error = None
                self.sink.api_error(handle.api, None)
        self.sink.replica_ready(handle.api, handle)
        publish_status(state, self.sink)

    def replica_failed(self, handle: ReplicaHandle, error: str, detail: str) -> None:
        found = self._find(handle)
        if found is None:
            return
        state, replica = found
        if replica.version == state.version.id:
            state.version.error = error
            state.version.detail = detail
            self.sink.api_error(handle.api, error)
            publish_status(state, self.sink)

    def replica_closed(self, handle: ReplicaHandle) -> None:
        self.sink.replica_gone(handle.api, handle)
        found = self._find(handle)
        if found is None or self.stopping:
            return
        state, replica = found
        replica.closed_at = time.monotonic()  # from now on it has LINGER_SECONDS to exit
        if replica.retired:
            return
        if replica.stuck:  # stopped on purpose: a request overran its timeout
            state.timed_out += 1
        else:
            failures.crashed(state, replica, handle.state == ReplicaState.FAILED, self._event)
        publish_status(state, self.sink)  # no longer live if it was the one ready replica

    def replica_lost_because(self, handle: ReplicaHandle) -> str | None:
        found = self._find(handle)
        return None if found is None else failures.lost_because(*found)

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
