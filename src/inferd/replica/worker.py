"""Replica process entry point: ``python -m inferd.replica.worker FD``.

Builds the API's Predictor once, tells the gateway it is ready (with the signature), then
answers frames one at a time on the socket it inherited: a blocking loop with no event loop,
threads or per-request allocations beyond the request itself. It exits when the gateway closes
its end (drain finished, or the gateway died).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any, NoReturn

import setproctitle

from inferd import codec, tracecontext
from inferd.config.schema import is_remote
from inferd.errors import LoadError
from inferd.handler.predictor import Predictor
from inferd.replica import messages
from inferd.replica.answering import answer, answer_batch
from inferd.replica.group import end_own_group, lead_group
from inferd.replica.hints import left_out_hint
from inferd.replica.lines import own_encoding, watch_output
from inferd.replica.messages import ReplicaSpec
from inferd.replica.spinning import Spin
from inferd.replica.streaming import may_stream, send_stream, take_stop

log = logging.getLogger("inferd.replica")

LOG_FORMAT = "%(asctime)s {api} [{replica}] %(levelname)s %(message)s"


def die_with_parent() -> None:
    # If the gateway is killed (even with SIGKILL) the kernel ends this replica too.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# Added to a replica's OOM score (the kernel's is 0-1000, by the memory a process holds): when
# the machine runs out of memory, its OOM killer takes a replica (the one that holds the most)
# rather than the gateway and operator every API needs, as kubelet ranks pods above itself.
OOM_SCORE_ADJ = 500


def offer_to_oom_killer() -> None:
    """Raise this process's ``oom_score_adj`` (inherited from the gateway's) to ``OOM_SCORE_ADJ``,
    or that much above it, up to the kernel's 1000 (raising needs no privilege); what the handler
    starts inherits it. Above the gateway's even where that is set: a Kubernetes pod's processes
    start at 2-999 by its memory request (``inferd export``'s pods, 900 and more), where a
    replica left at the gateway's score gave the OOM killer no preference."""
    path = Path("/proc/self/oom_score_adj")
    with contextlib.suppress(OSError, ValueError):
        inherited = int(path.read_text())
        wanted = min(1000, max(OOM_SCORE_ADJ, inherited + OOM_SCORE_ADJ))
        if inherited < wanted:
            path.write_text(str(wanted))


# Answers to pipelined frames go out together (one send, one wake-up of the gateway), unless
# their computing has taken longer than this: then each leaves as soon as it is ready.
FLUSH_AFTER = 0.001


def serve(sock: socket.socket, predictor: Predictor) -> None:
    """Answer frames until the gateway closes the socket.

    The gateway may write several request frames at once (it pipelines under load): they are
    answered in order, and their answers leave in one ``send`` once no complete frame is left
    in the buffer, or sooner when computing them has taken longer than ``FLUSH_AFTER``.
    """
    buffer = bytearray()
    recv = sock.recv
    sendall = sock.sendall
    length_of = messages.LENGTH.unpack_from
    clock = perf_counter
    unsent: list[bytes] = []
    since = 0.0  # when computing the oldest unsent answer began
    spin = Spin()
    spun = spin_next = False  # the gateway's SPIN came with the request answered / the next one
    while True:
        complete = len(buffer) >= 4 and len(buffer) >= 4 + length_of(buffer)[0]
        if unsent and (not complete or clock() - since > FLUSH_AFTER):
            sendall(unsent[0] if len(unsent) == 1 else b"".join(unsent))
            unsent.clear()
            if spun and not complete and not buffer:  # replica/spinning.py
                spun = False
                buffer += spin.next_bytes(recv, clock())
                if not buffer:
                    return
        if not complete:
            while len(buffer) < 4:
                chunk = recv(1 << 16)
                if not chunk:
                    return
                buffer += chunk
            (size,) = length_of(buffer)
            while len(buffer) < 4 + size:
                chunk = recv(max(1 << 16, 4 + size - len(buffer)))
                if not chunk:
                    return
                buffer += chunk
        (size,) = length_of(buffer)
        kind = bytes(buffer[4:5])
        body = bytes(buffer[5 : 4 + size])
        del buffer[: 4 + size]
        if kind == messages.STOP:  # for a stream that had already ended
            continue
        if kind == messages.TRACE:  # the trace context of the next request (inferd.tracecontext)
            tracecontext.set_current(body.decode("ascii", "replace"))
            continue
        if kind == messages.SPIN:
            spin.set_limit(body)
            spin_next = True
            continue
        spun, spin_next = spin_next, False
        if not unsent:
            since = clock()
        if kind == messages.BATCH:
            unsent.append(answer_batch(predictor, body))
            continue
        answered = answer(predictor, kind, body)
        if tracecontext.traceparent() is not None and type(answered) is tuple:
            tracecontext.set_current(None)
        if type(answered) is tuple:
            unsent.append(messages.reply_frame(*answered))
            continue
        if unsent:
            sendall(b"".join(unsent))
            unsent.clear()
        send_stream(sock, predictor, answered, buffer)  # type: ignore[arg-type]
        take_stop(buffer)
        tracecontext.set_current(None)


def read_spec(sock: socket.socket) -> ReplicaSpec:
    """The first frame on the socket: the spec the engine sends (exactly that frame is read)."""

    def exactly(count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the gateway closed the socket before sending the spec")
            data += chunk
        return bytes(data)

    (size,) = messages.LENGTH.unpack(exactly(4))
    payload = exactly(size)
    if payload[:1] != messages.SPEC:
        raise ConnectionError(f"expected the spec frame first, got kind {payload[:1]!r}")
    return ReplicaSpec.from_json(payload[1:])


def _user_paths(spec: ReplicaSpec) -> Callable[[str], str]:
    """Rewrites the snapshot's paths in a text into the user's project folder, and a remote
    model's cached copy into its URI (onnxruntime's "Load model from <path> failed" named
    ``$INFERD_HOME/cache/models/<digest>/m.onnx``, a file the user never wrote)."""
    pairs: list[tuple[str, str]] = []
    uri = spec.api.model_uri
    if uri is not None and is_remote(uri) and spec.model_path is not None:
        pairs.append((str(spec.model_path), uri.rstrip("/")))
    if spec.shown_root is not None and spec.shown_root != spec.project_root:
        pairs.append((str(spec.project_root) + os.sep, str(spec.shown_root) + os.sep))
    if not pairs:
        return lambda text: text

    def shown(text: str) -> str:
        for inside, user in pairs:
            text = text.replace(inside, user)
        return text

    return shown


class UserPathFormatter(logging.Formatter):
    """Formats as ``inner`` does, with the snapshot's paths shown as the user's files."""

    def __init__(self, inner: logging.Formatter | None, shown: Callable[[str], str]) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.shown = shown

    def format(self, record: logging.LogRecord) -> str:
        return self.shown(self.inner.format(record))


def _load(spec: ReplicaSpec) -> Predictor:
    return Predictor(spec.api, spec.project_root, spec.model_path)


def main(argv: list[str] | None = None, die_with_parent_: bool = True) -> int:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gateway's to handle (it drains)
    lead_group()  # what the handler starts goes with this replica
    offer_to_oom_killer()
    signal.signal(signal.SIGTERM, _end_group_then_die)  # also when the gateway's death ends it
    if die_with_parent_:
        die_with_parent()
    # closed as the replica leaves: the socket's finalizer called it a leak (a ResourceWarning,
    # a traceback in the API's log under PYTHONWARNINGS=error)
    with socket.socket(fileno=int(args[0])) as sock:
        return _replica(sock)


def _replica(sock: socket.socket) -> int:
    """Read the spec on ``sock``, load the API, then answer its requests until the gateway goes."""
    try:
        spec = read_spec(sock)
    except (OSError, ValueError) as exc:
        print(f"inferd replica: no spec from the engine: {exc}", file=sys.stderr)
        return 1
    # `ps` and `top` name it: a replica forked by a zygote would show the zygote's command line
    name_process(f"inferd replica {spec.replica_id}")
    # print() in a handler reaches the API's log line by line, not in 8 KiB blocks
    sys.stdout, sys.stderr = own_encoding(sys.stdout), own_encoding(sys.stderr)
    sys.stdout, sys.stderr, records = watch_output(sys.stdout, sys.stderr)
    logging.basicConfig(
        level=logging.INFO,
        format=LOG_FORMAT.format(api=spec.api.name, replica=spec.replica_id),
        handlers=[records],
    )
    shown = _user_paths(spec)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(UserPathFormatter(handler.formatter, shown))
    own_logging(records)
    os.chdir(spec.project_root)
    # requirements.txt packages go after inferd's own, so the runtime's numpy etc. win.
    sys.path.extend(str(path) for path in spec.extra_paths)
    try:
        predictor = _load(spec)
    except Exception as exc:
        if isinstance(exc, LoadError):
            summary, _, detail = exc.message.partition("\n")
        else:
            summary = f"loading failed: {type(exc).__name__}: {exc}"
            detail = traceback.format_exc().rstrip()
        summary, detail = (
            shown(summary) + left_out_hint(exc, spec.project_root, spec.shown_root),
            shown(detail),
        )
        if summary == spec.repeat_of:  # a retry that failed as the last one: its traceback is above
            log.error("%s (again, as the previous replica)", summary)
        else:
            log.error("%s%s", summary, "\n" + detail if detail else "")
        info: dict[str, Any] = {"error": summary, "detail": detail}
        with contextlib.suppress(OSError):  # the gateway let this replica go while it loaded
            sock.sendall(messages.frame(messages.FAILED, codec.dumps(info)))
        return 1
    own_logging(records)  # whatever the user's import did to logging (dictConfig, basicConfig(force=True))
    ready = {"pid": os.getpid(), "pipeline": not may_stream(predictor), **predictor.describe()}
    try:
        sock.sendall(messages.frame(messages.READY, codec.dumps(ready)))
    except OSError:  # replaced or stopped while it loaded (a newer deploy): nothing went wrong
        log.info("replica stopped before it was ready: the gateway no longer needs it")
        return 0
    log.info("replica is ready (pid %d)", os.getpid())
    with contextlib.suppress(ConnectionError, OSError):
        serve(sock, predictor)
    return 0


def own_logging(records: logging.Handler) -> None:
    """inferd's loggers write the replica's records (a handler's traceback, "replica is ready")
    themselves, not through the root logger, which is the user's to configure. Called again once
    the user's code is imported: ``logging.config.dictConfig`` disables every logger that exists
    (inferd's among them) unless told not to, as Cortex's ``refresh_logger`` knew."""
    own = logging.getLogger("inferd")
    own.setLevel(logging.INFO)
    own.propagate = False
    own.disabled = False
    if records not in own.handlers:
        own.addHandler(records)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("inferd.") and isinstance(logger, logging.Logger):
            logger.disabled = False


def name_process(title: str | None = None) -> None:
    """Show ``title`` as this process's command line (None: only get ready to, as a zygote does
    before its children clear their environment). Within the command line's own bytes: past
    them setproctitle would write over the environment, which /proc/PID/environ shows."""
    os.environ["SPT_NOENV"] = "1"  # read once, at setproctitle's first use
    try:
        if title is None:
            setproctitle.getproctitle()
        else:
            setproctitle.setproctitle(title)
    finally:
        del os.environ["SPT_NOENV"]


def _end_group_then_die(signum: int, frame: object) -> None:
    end_own_group()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # ends as SIGTERM always ended it: "killed by signal 15"


def leave(code: int) -> NoReturn:
    """End this process now: exit handlers run (logging's flush among them) and output is
    flushed, but the interpreter's teardown is skipped. With TensorFlow loaded that teardown
    took 1-2 s, which every stop, scale-down and rolling update waited for; a replica that is
    leaving has nothing left in its modules to save."""
    atexit._run_exitfuncs()  # prints a failing handler's traceback and goes on, as exit does
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        end_own_group()
    finally:  # whatever happens there, the handler's threads must not keep this process alive
        os._exit(code)


if __name__ == "__main__":
    leave(main())
