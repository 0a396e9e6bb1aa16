"""A replica zygote: ``python -P -m inferd.replica.zygote FD RUNTIME``.

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
descriptors (control socket, wake-up pipe, selector), sets signal dispositions as a fresh
Python process has them (SIGPIPE ignored, so a write to a closed pipe is ``BrokenPipeError``,
not death), keeps the exit handlers the imports registered (all run when it leaves, with those
of its handler, as a spawned replica's do), and reseeds ``random`` and NumPy before running
the replica's ``main``; it holds no file of the gateway (the zygote was started with none).

A spawned replica ends with the engine (the kernel sends it SIGTERM when its parent dies); a
forked one's parent is the zygote, which gets that signal instead and passes it on to every
replica it forked before it goes, so a replica busy with a request does not run on, orphaned.
A zygote closed by the engine (EOF on its socket) forks nothing more and leaves once its
replicas have ended, or when the engine's death is signalled (its socket may close first); one
killed (SIGKILL: the OOM killer, ``kill -9``) leaves its replicas serving.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import random
import selectors
import signal
import socket
import sys
from typing import Any

from inferd.replica.group import end_group

MAX_MESSAGE = 1 << 20
# What a fresh Python process sets (a spawned replica has it so): SIGPIPE and SIGXFSZ ignored.
IGNORED_AT_START = (signal.SIGPIPE, signal.SIGXFSZ)
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


class Forks:
    """The zygote's own descriptors and the replicas it forked and has not reaped yet."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.wakeup = os.pipe()
        self.selector = selectors.DefaultSelector()
        self.children: set[int] = set()

    def end_replicas(self, signum: int, frame: object) -> None:
        """SIGTERM (the engine died: ``die_with_parent``): its replicas go, then the zygote."""
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):  # unreaped: the pid names our child still
                os.kill(pid, signal.SIGTERM)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def close_in_child(self) -> None:
        self.selector.close()
        self.control.close()
        os.close(self.wakeup[0])
        os.close(self.wakeup[1])


def _child(forks: Forks, fds: list[int], request: dict[str, Any]) -> int:
    """In the forked child: become a replica on socket ``fds[0]``, writing on ``fds[1:]``."""
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    for number in IGNORED_AT_START:
        signal.signal(number, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked across the fork
    # The exit handlers the zygote's imports registered stay: a spawned replica imports the same
    # modules and runs theirs when it leaves (multiprocessing's joins the children a handler
    # started), then those its handler and model register.
    forks.close_in_child()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for target, fd in ((1, fds[1]), (2, fds[2])):  # the replica's stdout and stderr
        os.dup2(fd, target)
    for fd in set(fds[1:]) - {0, 1, 2}:
        os.close(fd)
    from inferd.replica.worker import name_process

    # setproctitle finds the memory of the command line at its first use, from the environment
    # (the zygote's own command line stays as it is)
    name_process()
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path.insert(0, request["cwd"])  # what ``python -m`` puts first: the project's folder
    random.seed()
    import numpy as np

    np.random.seed()
    from inferd.replica import worker

    sys.argv = [worker.__file__, str(fds[0])]
    return worker.main([str(fds[0])], die_with_parent_=False)


def serve(control: socket.socket) -> int:
    """Fork replicas as asked until the engine closes the control socket."""
    forks = Forks(control)
    wakeup = forks.wakeup
    os.set_blocking(wakeup[0], False)
    os.set_blocking(wakeup[1], False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, forks.end_replicas)
    selector = forks.selector
    selector.register(control, selectors.EVENT_READ)
    selector.register(wakeup[0], selectors.EVENT_READ)
    fd_size = array.array("i").itemsize
    closed = False
    while True:
        for key, _ in selector.select():
            if key.fileobj is not control:
                with contextlib.suppress(BlockingIOError):
                    os.read(wakeup[0], 4096)
                _reap(forks)
                if closed and not forks.children:
                    return 0
                continue
            try:
                data, ancillary, _, _ = control.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(3 * fd_size))
            except ConnectionError:  # the engine closed with our news to it unread
                data = b""
            if not data:
                if not forks.children:
                    return 0
                # Closed by the engine, or the engine died: its socket may close before the
                # kernel signals its death (``die_with_parent``), which ends the replicas too. Till
                # then, or till the replicas end, the zygote waits, forking nothing.
                selector.unregister(control)
                closed = True
                continue
            fds = array.array("i")
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fd_size])
            _fork(forks, list(fds), json.loads(data))


def _fork(forks: Forks, fds: list[int], request: dict[str, Any]) -> None:
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        _send(forks.control, {"error": f"expected 3 file descriptors, got {len(fds)}"})
        return
    # SIGTERM waits until the new replica is counted among those it ends (or, in the replica,
    # until the replica's own disposition is set)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    pid = os.fork()
    if pid == 0:
        from inferd.replica.worker import leave

        code = 1
        try:
            code = _child(forks, fds, request)
        finally:
            leave(code)  # the exit handlers the replica registered run, as in a spawned one
    forks.children.add(pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    for fd in fds:
        os.close(fd)
    _send(forks.control, {"pid": pid})


def _reap(forks: Forks) -> None:
    while True:
        try:  # seen, not yet reaped: its pid still names its group (its handler's processes)
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None:
            return
        end_group(ended.si_pid)
        pid, status = os.waitpid(ended.si_pid, 0)
        forks.children.discard(pid)
        _send(forks.control, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Ctrl-C, and the hang-up of the terminal `inferd serve` runs in, are the engine's to handle
    # (the zygote is in its process group): the zygote goes when the engine does, passing it on
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from inferd.replica.worker import die_with_parent

    die_with_parent()  # the zygote goes with the engine; its replicas go when their sockets close
    control = socket.socket(fileno=int(args[0]))
    _preload(args[1])
    _send(control, {"ready": os.getpid(), "threads": os_threads()})
    return serve(control)


if __name__ == "__main__":
    from inferd.replica.worker import leave

    leave(main())  # at once, without tearing TensorFlow's modules down
