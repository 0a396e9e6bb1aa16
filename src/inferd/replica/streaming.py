"""Streaming answers inside a replica: each item of an iterator goes out as its own frame.

A predictor's ``predict`` (or a handler's ``post_inference``) that returns a generator or any
other iterator streams: every item is encoded and sent as a ``CHUNK`` frame the moment it
exists, then an ``END`` frame. Between items the replica looks (without blocking) for the
gateway's ``STOP``; when it comes, the iterator is closed at once, so a generator's ``finally``
runs and the replica is free for the next request. ``sendall`` blocks while the gateway is not
reading (its client is slow): that is the backpressure, and the generator waits with it.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import socket
import traceback
from collections.abc import Iterator
from time import perf_counter
from typing import Any

import numpy as np

from inferd import codec
from inferd.handler.predictor import Predictor
from inferd.handler.user_errors import raised
from inferd.replica import messages
from inferd.replica.tracking import tracked_stream

log = logging.getLogger("inferd.replica")

# Whether results of a type stream, remembered per type: one dict lookup on the hot path. The
# common JSON-like results are known from the start; lists, dicts and strings never stream.
_STREAMS: dict[type, bool] = dict.fromkeys(
    (dict, list, str, bytes, tuple, int, float, bool, type(None), np.ndarray), False
)
_REMEMBERED = 1000
_STOP_FRAME = messages.frame(messages.STOP, b"")


def is_stream(result: Any) -> bool:
    """Whether a result streams: an iterator (a generator, ``iter(...)``, ``map``...)."""
    kind = type(result)
    known = _STREAMS.get(kind)
    if known is None:
        known = isinstance(result, Iterator)
        if len(_STREAMS) < _REMEMBERED:
            _STREAMS[kind] = known
    return known


def unanswerable(result: Any) -> str | None:
    """Why an async result cannot be answered (other platforms stream async generators), or None."""
    if inspect.isasyncgen(result):
        return (
            "an async generator does not stream: yield from a plain def (one request at a time per replica)"
        )
    if inspect.iscoroutine(result):
        result.close()  # never awaited: no RuntimeWarning
        return "a coroutine is not an answer: define the function with def, not async def"
    return None


def may_stream(predictor: Predictor) -> bool:
    """Whether the user's function is a generator function (known to stream).

    The gateway pipelines requests only to replicas whose answers do not stream: a long stream
    would hold up the requests written behind it. An iterator returned by a plain function is
    found at its first item, and the gateway stops pipelining to that API then.
    """
    if predictor.code is None:
        return False
    name = "predict" if predictor.runtime is None else "post_inference"
    function = predictor.code.get(name)
    return function is not None and inspect.isgeneratorfunction(function)


def stage_of(predictor: Predictor) -> str:
    """The user's function a streamed result came from, for error messages."""
    name = "predict" if predictor.runtime is None else "post_inference"
    return name if predictor.code is None else f"{name} in {predictor.code.file}"


def stop_requested(sock: socket.socket, buffer: bytearray) -> bool:
    """Whether the gateway sent ``STOP`` (read without blocking; other bytes stay in ``buffer``)."""
    try:
        data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
    except BlockingIOError:
        data = None
    if data == b"":
        raise ConnectionError("the gateway closed the socket")
    if data:
        buffer += data
    return take_stop(buffer)


def take_stop(buffer: bytearray) -> bool:
    """Remove the ``STOP`` frames at the head of ``buffer``; whether there was one."""
    found = False
    size = len(_STOP_FRAME)
    while buffer[:size] == _STOP_FRAME:
        del buffer[:size]
        found = True
    return found


def send_stream(sock: socket.socket, predictor: Predictor, items: Iterator[Any], buffer: bytearray) -> None:
    """Send ``items`` as ``CHUNK`` frames, then ``END`` (or the error); close them on ``STOP``."""
    sendall = sock.sendall
    chunk = messages.CHUNK
    frame = messages.frame
    started = perf_counter()
    count = 0
    stopped = False
    encoded = _Encoded(predictor, items)
    try:
        for data in encoded:
            sendall(frame(chunk, data))
            count += 1
            if stop_requested(sock, buffer):
                log.info("the client left: the stream was stopped after %d item(s)", count)
                stopped = True
                break
    finally:
        _close(items, predictor)
    timings = dict(predictor.timings)
    timings["model"] = timings.get("model", 0.0) + perf_counter() - started
    error = encoded.error
    tracked = None
    if error is None and not stopped:
        tracked = tracked_stream(encoded.first, count, predictor.api.tracker)
    meta = messages.pack_meta(timings, b"" if tracked is None else codec.dumps(tracked))
    if error is not None and count == 0:  # nothing sent yet: a plain error answer (HTTP 500)
        sendall(messages.reply_frame(500, codec.error_body(error)))
        return
    if count == 0:
        sendall(frame(chunk, b""))  # opens the (empty) stream
    body = b"" if error is None else codec.error_body(error)
    reply = messages.reply_frame(200 if error is None else 500, body, meta)
    sendall(reply[:4] + messages.END + reply[5:])


class _Encoded:
    """A streamed result's items as JSON bytes; ``error`` says why it ended early, if it did."""

    def __init__(self, predictor: Predictor, items: Iterator[Any]) -> None:
        self.predictor = predictor
        self.items = items
        self.error: str | None = None
        self.first: Any = None  # the first item, for a tracker (a stream of one item is that item)
        tracker = predictor.api.tracker
        self.keep_first = tracker is not None  # else nothing is held

    def __iter__(self) -> Iterator[bytes]:
        stage = stage_of(self.predictor)
        count = 0
        while True:
            try:
                item = next(self.items)
            except StopIteration:
                return
            except BaseException as exc:
                # sys.exit() in the generator too: the stream's error, not the replica's end
                log.error("%s failed after %d item(s):\n%s", stage, count, traceback.format_exc())
                self.error = f"{stage} failed after {count} item(s): {raised(exc)}"
                return
            try:
                data = codec.dumps_answer(item)  # as a whole answer is: float32 as the float64 it is
            except TypeError as exc:
                self.error = f"{stage} yielded a value that is not JSON-serialisable: {exc}"
                log.error("%s", self.error)
                return
            except Exception as exc:  # a bug of ours: the stream's error, never the replica's end
                log.error("encoding an item of %s failed:\n%s", stage, traceback.format_exc().rstrip())
                self.error = f"internal error: {type(exc).__name__}: {exc}"
                return
            if count == 0 and self.keep_first:
                self.first = item
            yield data
            count += 1


def _close(items: Iterator[Any], predictor: Predictor) -> None:
    close = getattr(items, "close", None)
    if close is None:
        return
    try:
        close()  # a generator's finally runs now
    except Exception:
        log.error("closing the stream of %s failed:\n%s", stage_of(predictor), traceback.format_exc())


def http_chunks(predictor: Predictor, items: Iterator[Any], sse: bool) -> tuple[int, bytes] | Iterator[bytes]:
    """A streamed result as SSE events or NDJSON lines, for a server other than the gateway (Ray).

    The first item is made here: a stream that fails before it is a plain error answer (500 and
    its JSON body), as the gateway answers it, not a 200 whose only line is the error."""
    encoded = _Encoded(predictor, items)
    made = iter(encoded)
    first = next(made, None)
    if first is None and encoded.error is not None:
        _close(items, predictor)
        return 500, codec.error_body(encoded.error)
    return _http_lines(
        predictor, items, encoded, made if first is None else itertools.chain((first,), made), sse
    )


def _http_lines(
    predictor: Predictor, items: Iterator[Any], encoded: _Encoded, made: Iterator[bytes], sse: bool
) -> Iterator[bytes]:
    try:
        for data in made:
            yield b"data: " + data + b"\n\n" if sse else data + b"\n"
        if encoded.error is None:
            return
    finally:
        _close(items, predictor)
    body = codec.error_body(encoded.error or "")
    yield b"event: error\ndata: " + body + b"\n\n" if sse else body + b"\n"
