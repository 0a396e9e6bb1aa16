"""A replica zygote: ``python -m inferd.replica.zygote FD RUNTIME``.

Imports inferd's replica modules and the runtime's framework once (``onnx``: onnxruntime,
``tensorflow``: TensorFlow, ``predictor``: neither), then forks replicas on request (the first
one of the runtime too), so a replica starts in about the time its model takes to load. The
user's handler is never imported here: each child loads its own, as a spawned replica does.

The engine talks to it on a SEQPACKET socket (FD). A request is one message: JSON
``{"cwd", "env"}`` with the replica's socket, stdout and stderr as three SCM_RIGHTS file
descriptors. The zygote answers ``{"pid": N}`` (or ``{"error": text}``) and, later,
``{"exit": N, "code": C}`` when a child ends (C negative for a signal, as ``Popen`` says it).

Fork safety: the zygote starts no thread of its own and creates no session or event loop; the
threads the imports start (NumPy's OpenBLAS pool, which its own fork handler shuts down, and
the frameworks' idle pools) are counted in its ready message. The child closes the zygote's
control socket, resets signal handlers and exit handlers (its own run when it leaves, as a
spawned replica's do), and reseeds ``random`` and NumPy before running the
replica's ``main``; it holds no file of the gateway (the zygote was started with none).
"""

from __future__ import annotations

import array
import atexit
import contextlib
import json
import logging
import os
import random
import selectors
import signal
import socket
import sys
from typing import Any

from inferd.replica.group import end_group

MAX_MESSAGE = 1 << 20
RUNTIME_MODULES = {"onnx": ("onnxruntime",), "tensorflow": ("tensorflow",), "predictor": ()}


def os_threads() -> int:
    """How many OS threads this process runs (counted by the kernel, not by ``threading``)."""
    return len(os.listdir("/proc/self/task"))


def _preload(runtime: str) -> None:
    import importlib

    importlib.import_module("inferd.replica.worker")
    for name in RUNTIME_MODULES[runtime]:
        importlib.import_module(name)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


def _child(control: socket.socket, wakeup: tuple[int, int], fds: list[int], request: dict[str, Any]) -> int:
    """In the forked child: become a replica on socket ``fds[0]``, writing on ``fds[1:]``."""
    signal.set_wakeup_fd(-1)
    # The zygote's exit handlers (the frameworks' teardown) are not the replica's to run: it
    # keeps only logging's, then runs those its handler and model register, when it leaves.
    atexit._clear()
    atexit.register(logging.shutdown)
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(number, signal.SIG_DFL)
    control.close()
    os.close(wakeup[0])
    os.close(wakeup[1])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for target, fd in ((1, fds[1]), (2, fds[2])):  # the replica's stdout and stderr
        os.dup2(fd, target)
    for fd in set(fds[1:]) - {0, 1, 2}:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # what ``python -m`` puts first: the project's folder
    random.seed()
    import numpy as np

    np.random.seed()
    from inferd.replica import worker

    sys.argv = [worker.__file__, str(fds[0])]
    return worker.main([str(fds[0])], die_with_parent_=False)


def serve(control: socket.socket) -> int:
    """Fork replicas as asked until the engine closes the control socket."""
    wakeup = os.pipe()
    os.set_blocking(wakeup[0], False)
    os.set_blocking(wakeup[1], False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wakeup[0], selectors.EVENT_READ)
    fd_size = array.array("i").itemsize
    while True:
        for key, _ in selector.select():
            if key.fileobj is not control:
                with contextlib.suppress(BlockingIOError):
                    os.read(wakeup[0], 4096)
                _reap(control)
                continue
            try:
                data, ancillary, _, _ = control.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(3 * fd_size))
            except ConnectionError:  # the engine closed with our news to it unread
                return 0
            if not data:
                return 0
            fds = array.array("i")
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fd_size])
            _fork(control, wakeup, list(fds), json.loads(data))


def _fork(control: socket.socket, wakeup: tuple[int, int], fds: list[int], request: dict[str, Any]) -> None:
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        _send(control, {"error": f"expected 3 file descriptors, got {len(fds)}"})
        return
    pid = os.fork()
    if pid == 0:
        from inferd.replica.worker import leave

        code = 1
        try:
            code = _child(control, wakeup, fds, request)
        finally:
            leave(code)  # the exit handlers the replica registered run, as in a spawned one
    for fd in fds:
        os.close(fd)
    _send(control, {"pid": pid})


def _reap(control: socket.socket) -> None:
    while True:
        try:  # seen, not yet reaped: its pid still names its group (its handler's processes)
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None:
            return
        end_group(ended.si_pid)
        pid, status = os.waitpid(ended.si_pid, 0)
        _send(control, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gateway's to handle
    from inferd.replica.worker import die_with_parent

    die_with_parent()  # the zygote goes with the engine; its replicas go when their sockets close
    control = socket.socket(fileno=int(args[0]))
    _preload(args[1])
    _send(control, {"ready": os.getpid(), "threads": os_threads()})
    return serve(control)


if __name__ == "__main__":
    from inferd.replica.worker import leave

    leave(main())  # at once, without tearing TensorFlow's modules down
