"""``inferd serve``: the gateway and the local engine in one foreground process.

Ctrl-C, SIGTERM or SIGHUP: stop taking predictions (``/healthz`` turns 503), let accepted requests
finish, stop the replicas, exit 0. With ``reload``, edits of the project roll its APIs over to
the new code (``operator/reload.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, NoReturn

import uvloop

from inferd.config.schema import Project
from inferd.engine.local import LocalEngine
from inferd.engine.packages import packages_dir
from inferd.gateway.access import AccessLog
from inferd.gateway.app import Gateway
from inferd.gateway.edge import EdgeLimits
from inferd.operator import heap
from inferd.operator.console import Console, ConsoleHandler
from inferd.operator.payloads import PayloadWriter
from inferd.operator.reload import Reloader, no_bytecode
from inferd.storage import pin_inferd_home
from inferd.storage.private import make_private_folders

log = logging.getLogger("inferd")

DEFAULT_GRACE = 30.0


class ListenError(OSError):
    """The gateway could not listen on the address asked for (any other OSError is not this)."""


async def serve_project(
    project: Project,
    host: str,
    port: int,
    grace: float = DEFAULT_GRACE,
    announce: Callable[[str], None] | None = None,
    access_log: bool = False,
    metrics: bool = True,
    reload: bool = False,
    limits: EdgeLimits | None = None,
    replicas: int | None = None,
) -> int:
    """Serve ``project`` until SIGINT/SIGTERM; return the exit status."""
    console = Console()  # the terminal may stop reading: never wait for it (operator/console.py)
    say = announce or console.say
    gateway_log = logging.getLogger("inferd.gateway")
    warnings = ConsoleHandler(console)
    gateway_log.addHandler(warnings)
    try:
        with _replica_events_said(say):
            access = AccessLog(stream=console) if access_log else None
            return await _serve(
                project, host, port, grace, say, access, metrics, reload, limits, replicas, console.say
            )
    finally:
        gateway_log.removeHandler(warnings)
        console.drain()


class _ReplicaEvents(logging.Handler):
    """The engine's events about replicas on the console (``replica p-2 exited with code 3;
    starting another in 0.25s``), which the operator writes into the API's log: with none here,
    a handler's ``os._exit`` or a crash in C showed only the next replica's "ready" line. Its
    warnings are printed as before (Python's last-resort handler printed them)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.say(self.format(record))  # with its traceback, as the last-resort handler printed it
        elif "': replica " in text:
            self.say(f"inferd: {text}")


@contextlib.contextmanager
def _replica_events_said(say: Callable[[str], None]) -> Iterator[None]:
    engine_log = logging.getLogger("inferd.engine")
    handler, level = _ReplicaEvents(say), engine_log.level
    engine_log.addHandler(handler)
    if engine_log.getEffectiveLevel() > logging.INFO:
        engine_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        engine_log.removeHandler(handler)
        engine_log.setLevel(level)


async def _serve(
    project: Project,
    host: str,
    port: int,
    grace: float,
    say: Callable[[str], None],
    log_writer: AccessLog | None,
    metrics: bool,
    reload: bool,
    limits: EdgeLimits | None,
    replicas: int | None,
    output: Callable[[str], None],
) -> int:
    gateway = Gateway(access_log=log_writer, metrics=metrics, limits=limits)
    home = pin_inferd_home()
    make_private_folders(home)
    engine = LocalEngine(gateway, home=home, fixed_replicas=replicas, console=output)
    gateway.replica_states = engine.replica_states
    gateway.replica_gpus = engine.replica_gpus
    # /healthz is 503 until every API of the project exists and has a ready replica.
    gateway.expect([config.key for config in project.apis])
    gateway.starting = "the server is setting up its APIs"  # a 503 until they exist, not a 404
    try:
        await gateway.start(host, port)
    except OSError as exc:
        raise ListenError(exc.errno, exc.strerror or str(exc)) from exc
    requirements = project.root / "requirements.txt"
    relax = project.deployment.relax_pins
    if (
        requirements.is_file()
        and any(config.api.installs_requirements for config in project.apis)
        and not (packages_dir(home, requirements, relax) / ".complete").exists()
    ):
        say("inferd: installing requirements.txt (/healthz answers 503 until every API is ready)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP: the terminal went away (an ssh session dropped). It killed the server outright, the
    # requests it was running lost; it now drains as Ctrl-C does. Unless it was ignored when the
    # server started: `nohup inferd serve` asks to outlive the terminal, and a handler would undo it.
    hang_up = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    for signum in (signal.SIGINT, signal.SIGTERM, *hang_up):
        loop.add_signal_handler(signum, stop.set)
    if reload:
        no_bytecode()
    # payload_log and shadow records go to $INFERD_HOME/payloads/, as under the operator
    payload_task = loop.create_task(PayloadWriter(home, gateway.payloads).run_forever())
    applied = await _applied(engine, project, stop)
    gateway.starting = None
    if applied:
        heap.settle()
        bound = gateway.ports[0] if gateway.ports else port
        base = f"http://{host}:{bound}"
        say(f"inferd: serving deployment '{project.deployment.name}' on {base}")
        for config in project.apis:
            count = max(1, config.api.compute.replicas_at_start) if replicas is None else replicas
            say(
                f"  {config.name:<20} POST {base}{config.endpoint}  ({config.api.model_format}, "
                f"{count} replica{'s' if count != 1 else ''}{'' if replicas is None else ', fixed'})"
            )
        ready_task = loop.create_task(_announce_ready(gateway, say, quiet_when_live=reload))
        watch_task = None
        if reload:
            watch_task = loop.create_task(Reloader(project, engine, say).run(stop))
        await stop.wait()
        ready_task.cancel()
        if watch_task is not None:
            watch_task.cancel()
    say("inferd: stopping: finishing accepted requests (Ctrl-C again is ignored)")
    await gateway.drain(grace)
    await engine.stop()
    await gateway.close()
    payload_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await payload_task
    if log_writer is not None:
        log_writer.flush()
    say("inferd: stopped")
    return 0


async def _applied(engine: LocalEngine, project: Project, stop: asyncio.Event) -> bool:
    """Apply ``project``; False when ``stop`` comes first: a remote model's download or a
    requirements install may take minutes, and Ctrl-C does not wait for it."""
    applying = asyncio.ensure_future(engine.apply(project))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((applying, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if applying.done():
        applying.result()  # (its error, if any)
        return True
    applying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await applying
    return False


async def _announce_ready(gateway: Gateway, say: Callable[[str], None], quiet_when_live: bool) -> None:
    # With --reload, the reloader tells why a new version of a live API did not load.
    announced: set[str] = set()
    errors: dict[str, str] = {}
    waiting = sorted({q.name for q in gateway.apis.values()} & set(gateway.not_ready()))
    if waiting:
        names = ", ".join(f"'{name}'" for name in waiting)
        say(f"inferd: loading the model of {names} (/healthz answers 503 until every API is ready)")
    while True:
        for key, queue in gateway.apis.items():
            if queue.ready and key not in announced:
                announced.add(key)
                say(f"inferd: api '{queue.name}' is live")
            if quiet_when_live and key in announced:
                continue
            if queue.error and errors.get(key) != queue.error:
                errors[key] = queue.error
                say(f"inferd: api '{queue.name}' failed to start: {queue.error}")
        await asyncio.sleep(0.1)


def run_leaving_threads(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop, without waiting for worker threads at the end (see ``exit_now``)."""
    return asyncio.Runner(loop_factory=uvloop.new_event_loop).run(main)


def exit_now(code: int) -> NoReturn:
    """End the process without waiting for threads still at work.

    Everything the operator owns is stopped by then; what may still run in a worker thread is a
    model download (or a ``pip install``, whose process the kernel ends) for a deploy that
    ``inferd down`` cut short. Python would wait for it at exit (minutes, past ``inferd down``'s
    60 s); its half-written files are in scratch folders the next collection removes, as after
    a ``kill -9``.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
