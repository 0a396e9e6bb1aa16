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
from collections.abc import Mapping
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
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pipe = os.pipe() if piped else None
    write_fd = pipe[1] if pipe is not None else None
    try:
        process: SpawnedReplica | ForkedProcess | None = None
        if zygotes is not None:
            outputs = (write_fd, write_fd) if write_fd is not None else (1, 2)
            fds = (theirs.fileno(), *outputs)
            process = zygotes.fork(runtime, fds, str(root), env)
        if process is None:
            process = SpawnedReplica(
                [sys.executable, "-m", "inferd.replica.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd=str(root),
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
    return process, ours, pipe[0] if pipe is not None else None
