"""Streamed answers in the gateway: a replica's ``CHUNK`` frames written to the client at once.

A Cortex-style request whose answer streams is written as Server-Sent Events when the client
sent ``Accept: text/event-stream`` (``data: <json>`` per item, ``event: error`` when the
predictor failed mid-stream), else as ``application/x-ndjson`` (one JSON document per line, a
final ``{"error": ...}`` line on failure); both chunked, one write per item. The Open Inference
Protocol's generate extension answers ``/generate`` with one JSON document (the items' text
joined) and ``/generate_stream`` with SSE.

Backpressure: when the client's transport pauses writing (its buffer passed the high-water
mark), the gateway stops reading the replica's socket, so the replica's send blocks and its
generator waits; the gateway holds at most the client's write buffer plus one read. A client
that leaves makes the gateway send ``STOP``: the replica closes the generator after the item
it is producing.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson

from inferd import codec
from inferd.gateway import wire
from inferd.gateway.wire import CORS, KEEP_ALIVE, status_line

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection
    from inferd.replica.handle import ReplicaHandle

SSE = "sse"
NDJSON = "ndjson"
GENERATE = "generate"  # one JSON answer with the items' text joined
GENERATE_STREAM = "generate_stream"  # SSE of generate-extension documents
MODEL_VERSION = "1"

# Events are UTF-8 (the SSE standard), and said so: a client of text/* without a charset
# (requests' ``.text`` and ``iter_lines(decode_unicode=True)``) read them as Latin-1 ("cafÃ©").
_TYPES = {
    SSE: b"text/event-stream; charset=utf-8",
    NDJSON: b"application/x-ndjson",
    GENERATE_STREAM: b"text/event-stream; charset=utf-8",
}
END = b"0\r\n\r\n"
# Bytes of a streamed answer's items kept for its payload-log record (or a shadow's comparison):
# the first MiB of them; a stream's items are otherwise never held once written.
RECORDED_BYTES = 1 << 20
# Text a V2 ``generate`` answer may join in the gateway (it is held until the generator ends):
# past it, the answer is an error and the generator is stopped, so that a generator yielding
# for ever cannot fill the gateway's memory (a 600 MB answer took it to 1.9 GB).
GENERATE_BYTES = 64 << 20


class ItemRecord:
    """The items of a streamed answer kept for its record, as one JSON list: those that fit in
    the first ``RECORDED_BYTES`` (a primary and a shadow streaming the same items keep the same)."""

    __slots__ = ("full", "items", "size")

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.size = 0
        self.full = False

    def add(self, payload: bytes) -> None:
        if self.full or not payload:
            return
        if self.size + len(payload) + 1 > RECORDED_BYTES:
            self.full = True  # later, smaller items are left out too: the record is a prefix
            return
        self.items.append(payload)
        self.size += len(payload) + 1

    def body(self) -> bytes:
        return b"[" + b",".join(self.items) + b"]"


def _chunk(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def mode_of(conn: HttpConnection) -> str:
    """How a Cortex-style request's stream is written, from its ``Accept`` header."""
    accept = conn.headers.get(b"accept", b"")
    return SSE if codec.wants_events(accept.decode("latin-1")) else NDJSON


class Stream:
    """One streamed answer on one connection (created at its first item, or for generate routes)."""

    def __init__(self, conn: HttpConnection, mode: str, model: str = "") -> None:
        self.conn = conn
        self.mode = mode
        self.model = model
        self.handle: ReplicaHandle | None = None
        self.opened = False  # the replica has started streaming
        self.headers_sent = False
        self.done = False  # the client has had its whole answer (or left)
        self.stopped = False  # STOP was sent to the replica
        self.failed = 0  # the status of an answer the gateway ended itself (a timeout: 504)
        self.stop_since = 0.0
        self.paused = False
        self.items = 0
        self.first_item = 0.0  # seconds from the request to its first item
        self.last_item = 0.0
        self.texts: list[str] = []
        self.text_bytes = 0
        # kept for the payload log or a shadow's comparison (``conn.recording``), else None
        self.recorded = ItemRecord() if conn.recording is not None else None
        # HTTP/1.0 knows no chunked encoding: its client reads the stream until the connection closes.
        self.framed = mode == GENERATE or conn.parser.get_http_version() != "1.0"
        if not self.framed:
            conn.keep_alive = False
        self.end = END if self.framed else b""

    # from the replica

    def item(self, handle: ReplicaHandle, payload: bytes) -> None:
        """One ``CHUNK`` (an empty one opens a stream that has no item yet)."""
        now = perf_counter()
        if not self.opened:
            self.opened = True
            self.handle = handle
            self.last_item = now
        if self.conn.closed:
            self.client_left()
            return
        if self.done:
            return
        if payload:
            self.items += 1
            self.last_item = now
            if self.items == 1:
                self.first_item = now - self.conn.started
            if self.recorded is not None:
                self.recorded.add(payload)
        if self.mode == GENERATE:
            if payload:
                self.text_bytes += len(payload)
                if self.text_bytes > GENERATE_BYTES:
                    self.fail(
                        f"the generated text passed {GENERATE_BYTES >> 20} MiB: "
                        "read a longer one with generate_stream",
                        500,
                    )
                    self.stop()
                    return
                self.texts.append(_text(payload))
            return
        parts = []
        if not self.headers_sent:
            parts.append(self._head())
        if payload:
            parts.append(self._piece(self._event(payload)))
        self._write(b"".join(parts))

    def finish(self, status: int, body: bytes, meta: bytes) -> bool:
        """The replica's last frame (``END``, or a plain ``REPLY``): end the answer.

        Returns whether the connection stays usable for its next request.
        """
        self._resume()
        if self.done:
            return False
        conn = self.conn
        if not self.opened:  # a plain answer (not an iterator, or failed before its first item)
            if status == 200 and self.mode == GENERATE_STREAM:
                self.item(_NO_HANDLE, body)  # one event with the whole answer
                body = b""
            else:
                self.done = True
                if status == 200 and self.mode == GENERATE:
                    body = self._generate([_text(body)])
                conn.respond(status, body)
                return False
        self.done = True
        if self.mode == GENERATE:
            conn.respond(status, body if status != 200 else self._generate(self.texts))
            return False
        tail = b""
        if not self.headers_sent:
            tail = self._head()
        if status != 200:
            message = _message(body)
            if self.mode == NDJSON:
                tail += self._piece(codec.error_body(message) + b"\n")
            else:
                tail += self._piece(b"event: error\ndata: " + codec.error_body(message) + b"\n\n")
        self._write(tail + self.end)
        return True

    # from the client and the clock

    def pause(self) -> None:
        """The client's buffer is full: stop reading the replica (its send blocks)."""
        if self.handle is not None and not self.paused and not self.done:
            self.paused = True
            self.handle.pause_reading()

    def resume(self) -> None:
        self._resume()

    def client_left(self) -> None:
        """The client disconnected: have the replica close the generator."""
        self.done = True
        self._resume()
        self.stop()

    def stop(self) -> None:
        if self.handle is not None and not self.stopped:
            self.stopped = True
            self.stop_since = perf_counter()
            self.handle.stop()

    def overdue(self, now: float, timeout: float, item_timeout: float) -> bool:
        """Apply the timeouts of a running stream; True when its replica must be abandoned.

        No item for ``item_timeout`` s: the generator is stuck, the replica is replaced. While the
        client does not read (``paused``) the generator waits on it, so that time is not counted:
        a slow client is bounded by ``timeout`` (and the edge's stalled-reader timeout), never
        taken for a stuck replica. The whole stream past ``timeout`` s: the client gets the error,
        the replica is told to stop (and replaced if it has not stopped ``item_timeout`` s later).
        """
        if self.stopped:
            return now - self.stop_since > item_timeout
        if self.paused:
            self.last_item = now
        elif now - self.last_item > item_timeout:
            self.fail(f"the stream produced no item within the api's item_timeout ({item_timeout:g}s)")
            return True
        if now - self.conn.started > timeout:
            self.fail(f"the stream did not finish within the api's timeout ({timeout:g}s)")
            self.stop()
        return False

    def fail(self, message: str, status: int = 504) -> None:
        """End the client's answer with an error now (a timeout's 504 by default) and close its
        connection."""
        if self.done:
            return
        self.done = True
        self.failed = status
        # The replica's items are read (and dropped) again, so that it can hear the STOP that
        # follows; paused, its send would block for ever and it would be killed as stuck.
        self._resume()
        conn = self.conn
        transport = conn.transport
        if transport is None:
            return
        if not self.headers_sent:
            conn.respond(status, codec.error_body(message), close=True)
            return
        if self.mode == NDJSON:
            data = codec.error_body(message) + b"\n"
        else:
            data = b"event: error\ndata: " + codec.error_body(message) + b"\n\n"
        transport.write(self._piece(data) + self.end)
        transport.close()

    # writing

    def _head(self) -> bytes:
        self.headers_sent = True
        conn = self.conn
        return b"".join(
            (
                status_line(200),
                wire.date,
                b"Content-Type: ",
                _TYPES[self.mode],
                b"\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n",
                b"Transfer-Encoding: chunked\r\n" if self.framed else b"",
                b"X-Request-ID: ",
                conn.request_id,
                b"\r\n",
                CORS,
                conn.extra_headers,  # a splitter's X-Inferd-Api, the traceparent
                KEEP_ALIVE if conn.keep_alive else b"Connection: close\r\n\r\n",
            )
        )

    def _piece(self, data: bytes) -> bytes:
        return _chunk(data) if self.framed else data

    def _event(self, payload: bytes) -> bytes:
        if self.mode == NDJSON:
            return payload + b"\n"
        if self.mode == GENERATE_STREAM:
            payload = self._generated(payload)
        return b"data: " + payload + b"\n\n"

    def _generated(self, payload: bytes) -> bytes:
        """A generate-extension document for one item's JSON, built around its bytes: read back,
        an integer past 64 bits would become a float (orjson), and the answer must not change."""
        head = (
            b'{"model_name":'
            + orjson.dumps(self.model)
            + b',"model_version":"'
            + MODEL_VERSION.encode()
            + b'"'
        )
        if not payload.startswith(b"{"):
            return head + b',"text_output":' + codec.dumps(_text(payload)) + b"}"
        if b'"model_name"' in payload or b'"model_version"' in payload:  # the item's own win
            item = codec.loads(payload)
            document = {"model_name": self.model, "model_version": MODEL_VERSION, **item}
            return codec.dumps(document)
        return head + (b"}" if payload == b"{}" else b"," + payload[1:])

    def _generate(self, texts: list[str]) -> bytes:
        return codec.dumps(
            {"model_name": self.model, "model_version": MODEL_VERSION, "text_output": "".join(texts)}
        )

    def _write(self, data: bytes) -> None:
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _resume(self) -> None:
        if self.paused and self.handle is not None:
            self.paused = False
            self.handle.resume_reading()


class _NoHandle:
    """Stands for the replica when a plain answer is written as a stream (nothing to pause)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def stop(self) -> None: ...


_NO_HANDLE: Any = _NoHandle()


def _text(payload: bytes) -> str:
    """The text of a generate-extension item (its JSON): a string, a document's ``text_output``,
    else the JSON itself, as the replica wrote it (big integers keep their digits). Read and
    written by ``codec``: text holding a lone surrogate (``"\\ud800"``, a request's echoed), which
    orjson refuses, raised in the gateway and cost the request its replica."""
    if payload.startswith((b'"', b"{")):
        item = codec.loads(payload)
        if isinstance(item, str):
            return item
        if isinstance(item, dict) and isinstance(item.get("text_output"), str):
            return str(item["text_output"])
    return payload.decode()


def _message(body: bytes) -> str:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")
    return str(value.get("error", value)) if isinstance(value, dict) else str(value)
