"""``inferd serve`` as the first process of a container (PID 1), where no init runs.

The image ``inferd export`` writes runs ``inferd serve`` as PID 1 (Kubernetes, ``docker run``
without ``--init``). The kernel hands PID 1 every orphaned process of the container to reap: a
helper a handler started in the background (``subprocess.run("tool &", shell=True)``), a
replica whose zygote died. ``inferd serve`` reaps only the children it started, so each of those
stayed a zombie until the pod ended (one more per request of such a handler), and a container's
pid limit ends it all. As PID 1 it therefore forks: the child serves, and PID 1 does what
``tini`` does: it passes each signal on to the server (SIGTERM drains, as Kubernetes expects),
reaps every process that ends, and exits with the server's status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

# What a terminal, `docker stop`, `docker kill -s` and Kubernetes send: each is the server's.
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def serve_under_an_init() -> None:
    """Return at once, unless this process is PID 1: then return in a forked child, which
    serves, while PID 1 reaps until that child ends and exits as it did. Called before any
    thread or event loop exists."""
    if os.getpid() != 1:
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or what waits in a buffer would be written twice
    # held until PID 1 passes them on: PID 1 ignores a signal it has no handler for
    held = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    server = os.fork()
    if server == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return
    _reap_until(server, held)


def _reap_until(server: int, held: set[int | signal.Signals]) -> NoReturn:
    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, held)
    while True:
        try:
            pid, status = os.wait()  # any child, the adopted ones too
        except ChildProcessError:
            os._exit(1)  # cannot be while the server runs: it is a child of this process
        if pid == server:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)  # killed by N: 128 + N, as a shell says
