"""How the local engine meets failure: dead replicas, replicas over their memory, failed steps.

A replica that dies is reaped once its exit code is known; a death while loading (no error
said: ``os._exit``, a signal, a crash in C) becomes its version's error, and repeated deaths
push the next start back. A replica over ``compute.mem_limit`` that no cgroup caps is stopped
here, and one still running 10 s after its connection closed is killed. A reconcile step that
fails for one API becomes the API's error with the reason, and that API is left alone for a
growing pause (``hold_until``) while the others carry on.
"""

from __future__ import annotations

import logging
import signal
import time
import traceback

from inferd.engine.memlimit import MemoryCaps
from inferd.engine.output import Events
from inferd.engine.state import ApiState, Replica, Version, rss_bytes
from inferd.replica.handle import ReplicaState
from inferd.types import ReplicaSink

log = logging.getLogger("inferd.engine")

MAX_BACKOFF = 30.0
# Replicas of a version that died unasked in a row (none had run a minute) before its status is
# ``error`` while none is ready, as Cortex's was when a pod failed: before that, ``updating``.
CRASH_LOOP = 3
# Seconds a replica whose connection closed has to exit (its exit handlers: multiprocessing's
# joins its children) before it is killed; as long as `inferd down` gives each replica.
LINGER_SECONDS = 10.0


def reap(state: ApiState, sink: ReplicaSink, event: Events) -> list[Replica]:
    """Forget the API's replicas whose process ended and whose connection closed.

    Returns those of an older version that served and died unasked (a crash, a timeout) while
    the new version failed, or left no replica ready while it loads: one like each must take its
    place (the old version serves until a version that loads is deployed).
    """
    lost: list[Replica] = []
    for replica in list(state.replicas):
        if replica.process.poll() is not None and replica.handle.state in (
            ReplicaState.CLOSED,
            ReplicaState.FAILED,
        ):
            state.replicas.remove(replica)
            version = state.version
            over_limit = replica.over_mem_limit
            if replica.cgroup is not None:
                if MemoryCaps.killed(replica.cgroup):
                    over_limit = True
                    event(
                        state.key,
                        f"replica {replica.id} passed compute.mem_limit (the kernel stopped it)",
                    )
                    version.oom = version.oom or replica.version == version.id
                MemoryCaps.release(replica.cgroup)
            code = replica.process.poll() or 0
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            if over_limit:  # the kill was inferd's (or the cgroup's) own: say why, not which signal
                how = (
                    f"used more than compute.mem_limit ({state.config.api.compute.mem_limit}) and was stopped"
                )
            replaced = (
                replica.version != version.id
                and replica.loaded
                and not replica.retired
                and (failed(version) or not any(other.ready for other in state.replicas))
            )
            if replica.crashed and replica.version == version.id:  # said now that its exit code is known
                pause = max(0.0, version.next_start - time.monotonic())
                event(state.key, f"replica {replica.id} {how}; starting another in {pause:.2f}s")
                version.last_crash = f"replica {replica.id} {how}"
                looping = crash_loop(state)
                if looping is not None and not version.error:  # requests are refused with it
                    sink.api_error(state.key, looping)
            elif replica.crashed:
                then = "; starting another like it" if replaced else ""
                event(state.key, f"replica {replica.id} of the previous version {how}{then}")
            elif replica.version == version.id and replica.loaded and time.monotonic() - replica.started > 60:
                # It ran well for a minute and was stopped (scaled down, replaced): the crashes
                # before it are no longer "in a row", as one that crashes after a minute resets them.
                version.failures, version.last_crash = 0, ""
            if replica.died_loading and replica.version == version.id and not (version.error or version.oom):
                version.error = f"a replica {how} while loading the model and handler"
                version.detail = version.error + f" (see `inferd logs {state.key}`)"
                sink.api_error(state.key, version.error)
            if replaced:
                lost.append(replica)
    return lost


def end_lingering(state: ApiState, event: Events, now: float) -> None:
    """Kill the API's replicas still running ``LINGER_SECONDS`` after their connection closed.

    A replica let go (drained, deleted, replaced) or one that closed by itself has nothing left
    to do but its exit handlers; one that outlives them (an exit handler that waits on something
    that never comes) would hold its room, and keep ``inferd delete`` waiting, for ever. One let
    go while it loads (a newer deploy, a delete) would load on for nothing, as long as that takes.
    """
    for replica in state.replicas:
        closed = replica.closed_at
        if closed is None or now - closed < LINGER_SECONDS or replica.process.poll() is not None:
            continue
        if replica.loaded or replica.handle.state == ReplicaState.FAILED:
            why = (
                f"has not exited {LINGER_SECONDS:.0f}s after it was let go (its code keeps the "
                "process alive: an exit handler that does not return)"
            )
        else:  # let go while it imported the handler or loaded the model, which nobody waits for
            why = f"was still loading {LINGER_SECONDS:.0f}s after it was let go"
        event(state.key, f"replica {replica.id} {why}; killing it")
        replica.closed_at = None  # said once; reaped once the kill lands
        replica.process.send_signal(signal.SIGKILL)


def crash_loop(state: ApiState) -> str | None:
    """Why the API is in error while replicas of its version keep dying unasked (``CRASH_LOOP``
    in a row, none ready, none that had run a minute): None when it is not."""
    version = state.version
    if version.failures < CRASH_LOOP or not version.last_crash:
        return None
    if any(r.ready and r.version == version.id for r in state.replicas):
        return None
    pause = max(0.0, version.next_start - time.monotonic())
    return (
        f"its replicas keep stopping once started ({version.failures} in a row, the last: "
        f"{version.last_crash}); the next starts in {pause:.1f}s (see `inferd logs {state.key}`)"
    )


def at_rest(state: ApiState, sink: ReplicaSink) -> None:
    """An API scaled to zero after a crash loop starts afresh at its next request: the loop's
    error refused every request, so none was admitted to start a replica (``live``, and every
    request 503 for ever)."""
    version = state.version
    if state.desired or not version.last_crash or any(r.version == version.id for r in state.replicas):
        return
    version.failures, version.last_crash = 0, ""
    if version.error is None and state.compute_reason is None:
        sink.api_error(state.key, None)


def failed(version: Version) -> bool:
    """Whether ``version`` failed to load (or ran out of memory): the old version serves on."""
    return version.error is not None or version.oom


def watch_memory(state: ApiState, event: Events) -> None:
    """Stop the API's replicas over ``compute.mem_limit`` that no cgroup caps."""
    # compute.mem is a request (placement); only mem_limit caps, here when no cgroup does
    if state.config.api.compute.mem_limit_bytes is None:
        return
    for replica in state.replicas:
        stop_if_over_limit(state, replica, event)


def stop_if_over_limit(state: ApiState, replica: Replica, event: Events) -> bool:
    """Stop ``replica`` if it is over ``compute.mem_limit`` and no cgroup caps it; whether it was.

    Also asked when a replica says it is ready: one that loaded between two polls (a forked
    one loads in a tenth of a second) would otherwise count as ready, and a deploy as live.
    """
    limit = state.config.api.compute.mem_limit_bytes
    if (
        limit is None
        or replica.cgroup is not None
        or replica.process.poll() is not None
        or rss_bytes(replica.process.pid) <= limit
    ):
        return False
    event(state.key, f"replica {replica.id} used more than compute.mem_limit; stopping it")
    replica.over_mem_limit = True
    if replica.version == state.version.id:
        state.version.oom = True
    replica.process.send_signal(signal.SIGKILL)
    return True


def lost_because(state: ApiState, replica: Replica) -> str | None:
    """What the requests a closed replica was running are told: why it was stopped, if known."""
    over = replica.over_mem_limit or (replica.cgroup is not None and MemoryCaps.killed(replica.cgroup))
    if not over:
        return None
    limit = state.config.api.compute.mem_limit
    return f"the replica running this request used more than compute.mem_limit ({limit}) and was stopped"


def crashed(state: ApiState, replica: Replica, said_why: bool, event: Events) -> None:
    """A replica that nobody stopped closed; ``said_why``: it reported its load error first."""
    state.failed += 1
    if replica.version != state.version.id:  # a previous version's: logged once reaped, no back-off
        replica.crashed = not said_why
        return
    version = state.version
    now = time.monotonic()
    if now - replica.started > 60:  # it ran fine for a while: a fresh failure
        version.failures = 0
    version.failures += 1
    version.next_start = now + min(MAX_BACKOFF, 0.25 * 2 ** (version.failures - 1))
    if said_why:
        return
    # Died without saying why (os._exit, a signal, a crash in C): said once reaped (its exit
    # code known); while loading, that is the version's error.
    replica.died_loading = not replica.loaded
    replica.crashed = True


def step_failed(state: ApiState, exc: Exception, now: float, sink: ReplicaSink, event: Events) -> None:
    """A reconcile step for the API raised ``exc`` (called while it is handled)."""
    state.step_failures += 1
    pause = min(MAX_BACKOFF, 0.5 * 2 ** (state.step_failures - 1))
    state.hold_until = now + pause
    message = f"the engine cannot run this API: {type(exc).__name__}: {exc}"
    version = state.version
    if state.step_error != message:
        log.exception("api '%s': reconcile failed", state.key)
        event(state.key, f"{message} (trying again in {pause:.1f}s, then less often)")
    state.step_error = message
    if version.error is None or version.error == message:
        version.error = message
        version.detail = "".join(traceback.format_exception(exc)).rstrip()
        sink.api_error(state.key, message)


def step_recovered(state: ApiState, sink: ReplicaSink, event: Events) -> None:
    """A reconcile step for the API went through again after failing."""
    version = state.version
    if version.error == state.step_error:
        version.error, version.detail = None, ""
        sink.api_error(state.key, None)
    state.step_error = None
    state.step_failures = 0
    event(state.key, "the engine runs this API again")
