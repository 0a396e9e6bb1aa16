"""Starting one replica process on this machine, connected to the gateway by a socketpair.

Each replica is ``python -m inferd.replica.worker FD`` (or a fork of its runtime's zygote,
given the same descriptors) with its end of a Unix socketpair passed as FD. The gateway's end
is never inherited, so a replica sees EOF when the gateway goes, and the kernel ends it if the
gateway process dies.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from inferd.engine.zygotes import ForkedProcess, Zygotes
from inferd.replica.group import end_group


class SpawnedReplica(subprocess.Popen[bytes]):
    """A replica spawned here: ``Popen`` that ends the replica's process group as it reaps it."""

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):  # seen, not yet reaped: its pid names its group
                if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    end_group(self.pid)
        return super().poll()

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.01)
        return code


def start_replica(
    root: Path, runtime: str, env: Mapping[str, str], zygotes: Zygotes | None, piped: bool
) -> tuple[SpawnedReplica | ForkedProcess, socket.socket, int | None]:
    """Start a replica in ``root``: forked by ``runtime``'s zygote when ``zygotes`` has one ready.

    Returns the process, the gateway's end of its socketpair and, when ``piped``, the read end
    of the pipe its output goes into (otherwise it writes on the terminal). OSError when no
    process can be started; nothing is left open then.
    """
    if zygotes is not None:
        started = _connected(piped, lambda fds: zygotes.fork(runtime, fds, str(root), env))
        if started is not None:
            return started
        # Spawned on a socket and pipe of its own: a zygote that did not answer in time may still
        # fork a child on those it was given, which then finds the gateway gone and leaves.
    started = _connected(
        piped,
        lambda fds: SpawnedReplica(
            [sys.executable, "-m", "inferd.replica.worker", str(fds[0])],
            pass_fds=(fds[0],),
            env=env,
            cwd=str(root),
            stdin=subprocess.DEVNULL,
            stdout=fds[1] if piped else None,
            stderr=fds[2] if piped else None,
        ),
    )
    assert started is not None
    return started


def _connected(
    piped: bool, start: Callable[[tuple[int, int, int]], SpawnedReplica | ForkedProcess | None]
) -> tuple[SpawnedReplica | ForkedProcess, socket.socket, int | None] | None:
    """``start`` given a new socketpair's replica end and the output's descriptors (a new pipe's
    write end, or the terminal's); None, with all of them closed, when it returns None."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pipe = os.pipe() if piped else None
    outputs = (pipe[1], pipe[1]) if pipe is not None else (1, 2)
    process = None
    try:
        process = start((theirs.fileno(), *outputs))
    finally:
        theirs.close()
        if pipe is not None:
            os.close(pipe[1])
        if process is None:
            ours.close()
            if pipe is not None:
                os.close(pipe[0])
    if process is None:
        return None
    return process, ours, pipe[0] if pipe is not None else None
