"""The engine's side of replica zygotes (``inferd.replica.zygote``): one per runtime.

The first replica a runtime needs starts its zygote and waits for it: the zygote does the
imports a replica would do first anyway (TensorFlow's take seconds of CPU), then forks that
replica and every later one, so the imports are done once, not once for the first replica and
again for the zygote. A zygote that died (a new one is started once a replica of its runtime is
ready), or that takes longer than ``WARM_WAIT`` to import, has replicas spawned the plain way.
``INFERD_ZYGOTE=0`` turns zygotes off.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from inferd.procfs import running

log = logging.getLogger("inferd.engine")

# A fork is answered in milliseconds (measured: onnxruntime's zygote 4-9 ms, TensorFlow's 16-25
# ms); the engine's event loop, and so the gateway, waits this long at most for the answer.
FORK_TIMEOUT = 3.0
# How long a replica waits for its runtime's zygote to finish importing before it is spawned
# the plain way (a zygote slower than that is stuck, or the machine is overloaded).
WARM_WAIT = 120.0
UNKNOWN_EXIT = 1  # a forked replica that ended after its zygote died: its status is lost


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("INFERD_ZYGOTE", "1") not in ("0", "false", "no", "off")


class ForkedProcess:
    """A replica forked by a zygote, with the part of ``Popen``'s interface the engine uses."""

    def __init__(self, pid: int, zygote: Zygote) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.zygote = zygote

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid)
        return self.returncode

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.01)
        return code


class Zygote:
    """One zygote process and its control socket."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # -P: not the folder this engine was started in first on sys.path (``python -m``
            # puts it there), or a stray module there would be every forked replica's
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "inferd.replica.zygote", str(theirs.fileno()), runtime],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        self.started = time.monotonic()
        self.ready = False
        self.dead = False
        self.threads = 0
        self.exits: dict[int, int] = {}
        self.unwatch: Callable[[], None] | None = None

    def usable(self) -> bool:
        """Ready to fork (its imports done) and alive."""
        self._collect(0.0)
        return self.ready and not self.dead

    def fork(
        self, socket_fd: int, out_fd: int, err_fd: int, cwd: str, env: Mapping[str, str]
    ) -> ForkedProcess:
        """A new replica process on ``socket_fd``; OSError when the zygote cannot make one."""
        request = json.dumps({"cwd": cwd, "env": dict(env)}).encode()
        fds = array.array("i", (socket_fd, out_fd, err_fd))
        try:
            self.control.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        except OSError:
            self.dead = True
            raise
        deadline = time.monotonic() + FORK_TIMEOUT
        while not self.dead:
            for message in self._collect(max(0.0, deadline - time.monotonic())):
                if "pid" in message:
                    return ForkedProcess(int(message["pid"]), self)
                if "error" in message:
                    raise OSError(f"the {self.runtime} zygote did not fork: {message['error']}")
            if time.monotonic() > deadline:
                self.dead = True
                raise OSError(f"the {self.runtime} zygote did not answer")
        raise OSError(f"the {self.runtime} zygote stopped")

    def exit_code(self, pid: int) -> int | None:
        self._collect(0.0)
        if pid in self.exits:
            return self.exits.pop(pid)
        if self.dead and not running(pid):  # orphaned: only whether it runs is known
            return UNKNOWN_EXIT
        return None

    def _collect(self, timeout: float) -> list[dict[str, Any]]:
        """The messages that arrive within ``timeout``; exit reports are kept in ``exits``."""
        replies: list[dict[str, Any]] = []
        while not self.dead:
            readable, _, _ = select.select([self.control], [], [], timeout)
            if not readable:
                break
            try:
                data = self.control.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                self.dead = True
                log.info("the %s zygote stopped; replicas start the plain way until it is back", self.runtime)
                break
            message = json.loads(data)
            if "exit" in message:
                self.exits[int(message["exit"])] = int(message["code"])
            elif "ready" in message:
                self.ready, self.threads = True, int(message.get("threads", 0))
            else:
                replies.append(message)
                timeout = 0.0
        return replies

    def close(self) -> None:
        if self.unwatch is not None:
            self.unwatch()
        self.control.close()
        self.dead = True
        try:
            self.process.wait(0.5)  # it leaves on EOF, unless still importing
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Zygotes:
    """A zygote per runtime, started on first use and again after it died.

    ``on_change`` is called (in the event loop) when a zygote that replicas wait for is ready
    or has died, so that they start at once rather than at the engine's next tick.
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.by_runtime: dict[str, Zygote] = {}
        self.on_change = on_change
        self.unstartable: set[str] = set()  # could not even be started: no retry until ``ensure``

    def warming(self, runtime: str) -> bool:
        """Whether a replica of ``runtime`` should wait for its zygote, which is importing.

        Starts the runtime's first zygote. One that died is not started again here (a new one
        comes once a replica is ready, ``ensure``): a zygote that cannot import never holds a
        replica back twice.
        """
        zygote = self.by_runtime.get(runtime)
        if zygote is None:
            zygote = None if runtime in self.unstartable else self._start(runtime)
            if zygote is None:
                self.unstartable.add(runtime)
                return False
        if zygote.dead or zygote.usable():
            return False
        return time.monotonic() - zygote.started < WARM_WAIT

    def fork(
        self, runtime: str, fds: tuple[int, int, int], cwd: str, env: Mapping[str, str]
    ) -> ForkedProcess | None:
        """A replica forked by ``runtime``'s zygote, or None (spawn it the plain way)."""
        zygote = self.by_runtime.get(runtime)
        if zygote is None or not zygote.usable():
            return None
        try:
            return zygote.fork(*fds, cwd, env)
        except OSError as exc:
            log.warning("%s; spawning the replica instead", exc)
            return None

    def ensure(self, runtime: str) -> None:
        """Start ``runtime``'s zygote if it has none or it died."""
        zygote = self.by_runtime.get(runtime)
        if zygote is not None and not zygote.dead:
            return
        if zygote is not None:
            zygote.close()
            del self.by_runtime[runtime]
        self.unstartable.discard(runtime)
        self._start(runtime)

    def _start(self, runtime: str) -> Zygote | None:
        try:
            zygote = self.by_runtime[runtime] = Zygote(runtime)
        except OSError as exc:
            log.warning("no %s zygote: %s", runtime, exc)
            return None
        self._watch(zygote)
        return zygote

    def _watch(self, zygote: Zygote) -> None:
        """Call ``on_change`` once ``zygote`` is ready or dead (its first news, in the loop)."""
        on_change = self.on_change
        if on_change is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        fd = zygote.control.fileno()

        def readable() -> None:
            zygote.usable()  # reads what it said
            if zygote.ready or zygote.dead:
                unwatch()
                on_change()

        def unwatch() -> None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing to remove
                loop.remove_reader(fd)
            zygote.unwatch = None

        loop.add_reader(fd, readable)
        zygote.unwatch = unwatch

    def keep_only(self, runtimes: set[str]) -> None:
        """Stop the zygotes of runtimes no API uses any more (TensorFlow's holds ~600 MiB)."""
        for runtime in list(self.by_runtime):
            if runtime not in runtimes:
                log.info("no API runs on %s any more: its zygote stops", runtime)
                self.by_runtime.pop(runtime).close()

    def close(self) -> None:
        for zygote in self.by_runtime.values():
            zygote.close()
        self.by_runtime.clear()
