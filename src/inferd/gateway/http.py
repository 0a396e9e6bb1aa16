"""A thin HTTP/1.1 server connection: ``asyncio.Protocol`` + httptools, one write per response.

Measured (DESIGN.md section 4), an ASGI stack cost more CPU per request than a whole
hand-written server, so the hot routes go through this: no request objects, no Task or Future
per request, keep-alive and pipelining (answered in order), ``Expect: 100-continue``, and a
body size limit enforced while reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from inferd import codec
from inferd.gateway import edge
from inferd.gateway.edge import EdgeLimits, Listener
from inferd.gateway.wire import CORS as CORS
from inferd.gateway.wire import RETRY_AFTER as RETRY_AFTER
from inferd.gateway.wire import TIMING, origin_form
from inferd.gateway.wire import WANTED_HEADERS as WANTED_HEADERS
from inferd.gateway.wire import Request as Request
from inferd.gateway.wire import next_request_id as next_request_id
from inferd.gateway.wire import parse_query as parse_query
from inferd.gateway.wire import status_line as status_line
from inferd.gateway.wire import valid_id as valid_id

if TYPE_CHECKING:
    from inferd.gateway.queue import ApiQueue
    from inferd.gateway.shadow import ShadowCopy, ShadowRoute
    from inferd.gateway.stream import Stream
    from inferd.replica.handle import ReplicaHandle

log = logging.getLogger("inferd.gateway")

# Said on every answer that keeps the connection: an HTTP/1.0 client (``ab -k``) waits for the
# close otherwise.
KEEP_ALIVE = b"Connection: keep-alive\r\n\r\n"


class HttpApp(Protocol):
    """What a connection needs from the server it belongs to (the gateway, the admin API)."""

    body_limit: int
    limits: EdgeLimits
    clock: float
    connections: set[HttpConnection]
    bodies_held: int  # bytes of request bodies still arriving, on every connection (max_body_buffer)
    cors: bytes  # the CORS header line every answer carries (b"": pages of other origins read none)

    def admit(self, conn: HttpConnection, method: bytes, path: bytes, headers: dict[bytes, bytes]) -> int:
        """The body limit of a request whose headers just ended, or -1 when it was refused at once."""
        ...

    def handle(self, conn: HttpConnection, request: Request) -> None:
        """Answer ``request`` now or later with ``conn.respond``."""
        ...

    def finished(self, queue: ApiQueue, status: int, conn: HttpConnection, meta: bytes) -> bytes:
        """Account for one answered request; extra response headers (from the replica's metadata)."""
        ...

    def connection_closed(self, conn: HttpConnection) -> None:
        """``conn`` is gone (the listener may accept again)."""
        ...

    def record(
        self, queue: ApiQueue, conn: HttpConnection, request: bytes, status: int, answer: bytes
    ) -> None:
        """Keep a sampled request and its answer for the payload log."""
        ...

    def refused(self, conn: HttpConnection, path: bytes, status: int) -> None:
        """Count a request to ``path`` answered ``status`` at the edge (its body too large, say)
        as one of its API's requests: metrics, ``inferd get`` and the access log."""
        ...


class HttpServer:
    """Defaults for an ``HttpApp`` that needs no per-route limits (the admin API, the dashboard),
    and its listener, capped as the gateway's is (``edge.Listener``) but at ``SIDE_CONNECTIONS``."""

    body_limit = 1 << 20
    limits = EdgeLimits()
    clock = 0.0
    bodies_held = 0
    # Served to the CLI and to the dashboard's own page only: no other origin's script may read an
    # answer (the gateway's ``CORS`` would let any web page find and fingerprint them on loopback).
    cors = b""
    connections: set[HttpConnection]
    listener: Listener | None = None

    async def listen(self, name: str, host: str, port: int, factory: Callable[[], HttpConnection]) -> int:
        """Serve connections from ``factory`` on ``host:port``, at most ``SIDE_CONNECTIONS`` at
        once (``name`` says whose in the warnings); the port."""
        self.listener = Listener(
            edge.listen(host, port), factory, self.connections, edge.SIDE_CONNECTIONS, name
        )
        await self.listener.start()
        port_taken: int = self.listener.sockets[0].getsockname()[1]
        return port_taken

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def admit(self, conn: HttpConnection, method: bytes, path: bytes, headers: dict[bytes, bytes]) -> int:
        return self.body_limit

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.listener is not None and self.listener.paused:
            self.listener.resume()

    def record(
        self, queue: ApiQueue, conn: HttpConnection, request: bytes, status: int, answer: bytes
    ) -> None:
        return None

    def refused(self, conn: HttpConnection, path: bytes, status: int) -> None:
        return None


# Where a connection is in its current request (the sweep applies the matching timeout).
HEAD, BODY, IDLE = 0, 1, 2


class HttpConnection(asyncio.Protocol):
    """One client connection. Also the ``Waiter`` of the request it sent to a replica.

    Limits (``EdgeLimits``) are decided as early as the information exists: the head size while
    it arrives, the route, body limit and API key when the headers end (``app.admit``), the body
    size as chunks arrive. Pipelined requests wait in order, at most ``max_pipeline`` of them
    before reading pauses; reading also pauses while the client does not read our answers.
    """

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        self.limits = app.limits
        self.cors = app.cors
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.busy = False
        self.pipeline: deque[Request] = deque()
        self.queue: ApiQueue | None = None
        self.started = 0.0
        self.sent_at = 0.0
        self.protocol = "cortex"
        self.replica_id = ""
        self.path = b""
        self.request_id = b""
        self.extra_headers = b""  # set by a route for this answer (a splitter's X-Inferd-Api)
        self.recording: bytes | None = None  # the request body, when payload_log samples it
        self.shadow: ShadowRoute | None = None  # set by a splitter with a shadow for this request
        self.copy: ShadowCopy | None = None  # this request's shadow copy, sent once it is answered
        self.trace = b""  # this request's traceparent, for the replica (b"": untraced)
        self.client_span = b""  # the span id of the traceparent the client sent (b"": none)
        self.keep_alive = True
        self.head_only = False  # the request being answered is a HEAD: its answer has no body
        # edge state: phase and since (for the sweep), head bytes, pauses, an early refusal
        self.phase = HEAD
        self.since = app.clock
        self.head_bytes = 0
        self.read_paused = False
        self.write_paused = False
        self.write_paused_since = 0.0
        self.lingering = False
        self.linger_since = 0.0
        self.broken = False  # an unparsable request came behind others: their answers go first
        self._admitting = False
        self._early = False
        self._continue = False  # a 100 Continue owed once the answers before it are written
        self.listener: Listener | None = None  # the one that accepted it (its idle candidates)
        self._advancing = False
        self.headers: dict[bytes, bytes] = {}
        self.stream: Stream | None = None  # the answer being streamed (gateway/stream.py)
        self._url = b""
        self._head_size = 0  # the request line and headers as parsed (see on_headers_complete)
        self._path = b""
        self._query = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._held = 0  # of ``_body``'s bytes, those counted in ``app.bodies_held``
        self.body_since = 0.0  # when the current request's body began (the sweep's minimum rate)
        self._limit = 0
        self._too_large = False
        app.connections.add(self)  # counted from the accept on (the connection cap)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.since = self.app.clock

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.pipeline.clear()
        self._release()
        if self.listener is not None:
            self.listener.forget(self)
        self.app.connection_closed(self)
        stream = self.stream
        if stream is not None:
            stream.client_left()
        if self.queue is not None and (stream is None or stream.handle is None):
            self.queue.left(self)  # before its first item: the replica stops the stream at it

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.broken:  # answered early, or after a bad request: read and drop
            return
        # Counted until the head ends, and in a body from its last byte on (``on_body`` sets it
        # back to 0): a chunked body's framing and trailer fields are bounded as a head is.
        self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgraded()
        except httptools.HttpParserError as exc:
            if not self.lingering:
                self.refuse(400, f"malformed HTTP request: {exc}")
        if self.head_bytes > self.limits.max_header_bytes and not self.lingering and not self.broken:
            limit = self.limits.max_header_bytes
            if self.phase == HEAD:
                self.refuse(431, f"the request line and headers are larger than {limit} bytes")
            elif self.phase == BODY:
                self._trailers_too_large()

    def _trailers_too_large(self) -> None:
        limit = self.limits.max_header_bytes
        self.refuse(431, f"the chunked body's framing and trailer fields are larger than {limit} bytes")

    def _upgraded(self) -> None:
        """The request asked for another protocol (``Upgrade``, ``CONNECT``): it is answered as
        plain HTTP and the connection ends there (its answer says so); what follows is dropped."""
        self.broken = True

    def pause_writing(self) -> None:
        """The client does not read our answers: stop reading its requests until it does."""
        self.write_paused = True
        self.write_paused_since = self.app.clock
        if self.stream is not None:
            self.stream.pause()
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.stream is not None:
            self.stream.resume()
        self._advance()
        self._rested()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.phase = HEAD
        self.since = self.app.clock
        self._url = b""
        self._head_size = 0
        self._headers = {}
        self._release()
        self._body = []
        self._size = 0
        self._too_large = False
        self._continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # "name: value\r\n"
        if self.phase != HEAD:  # a trailer field (after a chunked body): counted, never a header
            if self._head_size > self.limits.max_header_bytes and not self.lingering:
                self._trailers_too_large()
            return
        name = name.lower()
        if name in WANTED_HEADERS:
            if name == b"traceparent" and name in self._headers:
                value = b""  # W3C Trace Context: two traceparent fields are invalid, a new trace
            self._headers[name] = value

    def on_headers_complete(self) -> None:
        if self.lingering:
            return
        self.phase = BODY
        self.since = self.body_since = self.app.clock
        self.head_bytes = 0
        head_size, self._head_size = self._head_size, 0  # from now on: trailer fields
        # data_received counts whole reads, so a head that ends in the read that crosses the limit
        # got past it (up to twice the limit in two 64 KiB reads): count what was parsed, plus
        # the method, " HTTP/1.1\r\n" with its space and the blank line (14 bytes).
        limit = self.limits.max_header_bytes
        if head_size + 21 > limit and head_size + len(self.parser.get_method()) + 14 > limit:
            self.refuse(431, f"the request line and headers are larger than {limit} bytes")
            return
        url = self._url
        self._path, _, self._query = (url if url[:1] == b"/" else origin_form(url)).partition(b"?")
        headers = self._headers
        if b"upgrade" in headers and self.parser.should_upgrade() and self._has_body_method():
            # The parser hands what follows an upgrade request's headers to the new protocol: its
            # body would be lost and the request answered as if it had none.
            self.refuse(
                400, "a request with a body cannot ask for a protocol upgrade (remove Upgrade)", self._path
            )
            return
        coding = headers.get(b"content-encoding")
        if coding is not None and coding.strip().lower() not in (b"", b"identity"):
            shown = coding.decode("latin-1")[:64]
            self.refuse(
                415, f"Content-Encoding {shown} is not supported: send the body uncompressed", self._path
            )
            return
        transfer = headers.get(b"transfer-encoding")
        if transfer is not None:
            # httptools undoes only chunked, the last coding: with others before it the body
            # would reach the handler still coded (RFC 9112 6.1: 501).
            other = [c for c in (c.strip().lower() for c in transfer.split(b",")) if c and c != b"chunked"]
            if other:
                shown = other[0].decode("latin-1")[:64]
                self.refuse(
                    501,
                    f"Transfer-Encoding {shown} is not supported: send the body with chunked alone",
                    self._path,
                )
                return
        self._admitting = True
        try:
            limit = self.app.admit(self, self.parser.get_method(), self._path, headers)
        finally:
            self._admitting = False
        if limit < 0:  # refused (401, 403, 404...) before any body byte
            return
        self._limit = limit
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._body_too_large()
        elif (
            self.transport
            and headers.get(b"expect", b"").lower() == b"100-continue"
            and self.parser.get_http_version() != "1.0"  # HTTP/1.0 has no 1xx: the expectation is ignored
        ):
            # Answers go out in order: behind unanswered requests, the 100 waits for its turn.
            self._continue = True
            self._continue_if_due()

    def _continue_if_due(self) -> None:
        """Send the 100 Continue owed to the request being read once nothing before it is
        unanswered (none is owed once its body has come: RFC 9110 lets the server omit it)."""
        if self._continue and not (self.busy or self.pipeline) and self.transport is not None:
            self._continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    @property
    def body_bytes(self) -> int:
        """Bytes of the current request's body received so far."""
        return self._size

    def on_body(self, body: bytes) -> None:
        self.head_bytes = 0
        if self._too_large or self.lingering:
            return
        self.since = self.app.clock
        self._size += len(body)
        if self._size > self._limit:  # chunked bodies are counted as they arrive
            self._body = []
            self._release()
            self._body_too_large()
            return
        self._body.append(body)
        self._held += len(body)
        app = self.app
        app.bodies_held += len(body)
        if app.bodies_held > self.limits.max_body_buffer:
            # Many bodies arriving at once (slowly, from many connections) would hold the
            # gateway's memory without end: the one that crosses the budget is shed.
            self._body = []
            self._release()
            self._too_large = True  # the rest of it is read and dropped, never buffered
            self.refuse(
                503, "the gateway is holding too many request bodies at once: retry shortly", self._path
            )
            return
        transport = self.transport
        if (
            self._size > edge.READ_AHEAD
            and (self.busy or self.pipeline)
            and transport
            and not self.read_paused
        ):
            # Behind an unanswered request: the rest of this body waits in the socket (``_advance``
            # reads on once the answers before it are written).
            self.read_paused = True
            transport.pause_reading()

    def _release(self) -> None:
        """This connection's body bytes are no longer held (handed on, refused or gone)."""
        if self._held:
            self.app.bodies_held -= self._held
            self._held = 0

    @staticmethod
    def _error(status: int, message: str, path: bytes = b"") -> Request:
        """A pipelined request refused before it was read: its answer waits for the earlier ones'
        (the status rides in ``path`` and the path it was sent to in ``query``; no method marks it)."""
        return Request(b"", b"%d" % status, path, {}, codec.error_body(message), False)

    def _body_too_large(self) -> None:
        if self.busy or self.pipeline:  # answers go out in order: this one after the earlier ones
            self._too_large = True
        else:
            self.refuse(413, f"the request body is larger than {self._limit} bytes", self._path)

    def _has_body_method(self) -> bool:
        return self.parser.get_method() not in (b"GET", b"HEAD", b"OPTIONS")

    def on_message_complete(self) -> None:
        if self.lingering or self.broken:
            return
        self.phase = IDLE
        self._continue = False
        if self._too_large:
            message = f"the request body is larger than {self._limit} bytes"
            self.pipeline.append(self._error(413, message, self._path))
            self._advance()
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._release()
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive()
        if method == b"CONNECT" or (b"upgrade" in self._headers and self.parser.should_upgrade()):
            keep_alive = False  # answered as plain HTTP; what follows is another protocol's
        request = Request(method, self._path, self._query, self._headers, body, keep_alive)
        if self.busy or self.write_paused or self.pipeline:
            self.pipeline.append(request)
            if len(self.pipeline) >= self.limits.max_pipeline and not self.read_paused and self.transport:
                self.read_paused = True
                self.transport.pause_reading()
        else:
            self._start(request)

    def _start(self, request: Request) -> None:
        self.busy = True
        self.keep_alive = request.keep_alive
        self.head_only = request.method == b"HEAD"
        self.path = request.path
        self.headers = request.headers
        self.extra_headers = b""
        self.shadow = None
        self.trace = self.client_span = b""
        if not request.method:  # refused (too large, unparsable) while earlier ones were answered
            self.request_id = next_request_id()
            status = int(request.path)
            self.respond(status, request.body, close=True)
            if request.query:  # sent to an API: one of its requests
                self.app.refused(self, request.query, status)
            return
        given = request.headers.get(b"x-request-id")
        self.request_id = given if given and valid_id(given) else next_request_id()
        try:
            self.app.handle(self, request)
        except Exception:  # a bug of ours: answer 500, keep the connection and the server alive
            log.exception("the gateway failed on %s", request.path.decode("utf-8", "replace"))
            self.respond(500, codec.error_body("internal error in the gateway (see its log)"))

    def adopt(self, headers: dict[bytes, bytes]) -> None:
        """Make the request whose head just ended the one an answer given now names (a wrong key
        refused at ``admit``): its id and path, none of the last request's headers."""
        self.path = self._path
        self.extra_headers = b""
        given = headers.get(b"x-request-id")
        self.request_id = given if given and valid_id(given) else next_request_id()

    def answer_head(self, request: Request) -> None:
        """Answer ``request`` from its head alone, before its body is read (``admit`` of a route
        with no API): as its own request, with its own id and none of the last one's headers."""
        self._start(request)

    def _advance(self) -> None:
        """Start pipelined requests while nothing is running; resume reading when few are left."""
        if self._advancing:  # an answer given synchronously inside the loop below
            return
        self._advancing = True
        try:
            pipeline = self.pipeline
            while pipeline and not self.busy and not self.write_paused and self.transport is not None:
                self._start(pipeline.popleft())
            transport = self.transport
            if (
                self.read_paused
                and not self.write_paused
                and transport is not None
                and len(pipeline) < self.limits.max_pipeline
                and not (self.busy and self.phase == BODY and self._size > edge.READ_AHEAD)
            ):
                self.read_paused = False
                if self.phase == BODY:  # the pause was ours: the body's clocks start again
                    self.since = self.body_since = self.app.clock
                transport.resume_reading()
        finally:
            self._advancing = False

    # answers

    def refuse(self, status: int, message: str, path: bytes = b"") -> None:
        """Answer an error before the request is read (or when it cannot be parsed), then close.
        A request to ``path`` (an API's route) is counted as that API's."""
        if self.busy or self.pipeline or self.write_paused:  # answered after the earlier requests
            self.broken = True
            self.pipeline.append(self._error(status, message, path))
            return
        self.busy = True
        self._early = True
        self.head_only = False
        self.extra_headers = b""
        given = self._headers.get(b"x-request-id") if path else None
        self.request_id = given if given and valid_id(given) else next_request_id()
        self.respond(status, codec.error_body(message), close=True)
        if path:
            self.app.refused(self, path, status)

    def submit(self, queue: ApiQueue, kind: bytes, body: bytes, protocol: str = "cortex") -> None:
        """Hand the request to ``queue``; ``on_reply`` answers the client later."""
        self.queue = queue
        self.protocol = protocol
        self.replica_id = ""
        self.started = self.sent_at = perf_counter()
        queue.submit(self, kind, body)

    def on_chunk(self, handle: ReplicaHandle, payload: bytes) -> None:
        """One item of a streamed answer: written to the client at once."""
        stream = self.stream
        if stream is None:
            from inferd.gateway.stream import Stream, mode_of

            stream = self.stream = Stream(self, mode_of(self))
        stream.item(handle, payload)

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None:
        queue = self.queue
        self.queue = None
        headers = b""
        if self.stream is not None and self.stream.failed:
            status = self.stream.failed  # what the client got, whatever the stopped replica ended with
        if queue is not None:
            headers = self.app.finished(queue, status, self, meta)
            if self.recording is not None:
                answer = body
                stream = self.stream
                if stream is not None and stream.opened and stream.recorded is not None and not body:
                    answer = stream.recorded.body()  # a streamed answer: its items as a list
                self.app.record(queue, self, self.recording, status, answer)
                self.recording = None
            if self.headers.get(TIMING) == b"1":
                self.extra_headers += b"Server-Timing: inferd;dur=%.3f\r\n" % (
                    (perf_counter() - self.started) * 1000
                )
        stream = self.stream
        if stream is not None:
            self.stream = None
            if stream.finish(status, body, meta):
                self.next_request()
            return
        self.respond(
            status,
            body,
            headers=headers,
            content_type=b"application/octet-stream" if headers else b"application/json",
        )

    def respond(
        self,
        status: int,
        body: bytes,
        close: bool = False,
        headers: bytes = b"",
        content_type: bytes = b"application/json",
    ) -> None:
        """Write one complete response, then start the next pipelined request."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.lingering:
            return
        early = self._admitting or self._early  # answered before the request was read
        close = close or early or not self.keep_alive
        if status == 503 and b"Retry-After" not in headers:  # starting, overloaded or stopping
            headers += RETRY_AFTER
        transport.write(
            b"".join(
                (
                    status_line(status),
                    b"Content-Type: ",
                    content_type,
                    b"\r\nContent-Length: ",
                    str(len(body)).encode(),
                    b"\r\nX-Request-ID: ",
                    self.request_id or next_request_id(),
                    b"\r\n",
                    self.cors,
                    self.extra_headers,
                    headers,
                    b"Connection: close\r\n\r\n" if close else KEEP_ALIVE,
                    b"" if self.head_only and not early else body,
                )
            )
        )
        if close:
            self.pipeline.clear()
            if early and transport.can_write_eof():
                # The client may still be sending: read and drop a while so it sees this answer.
                transport.write_eof()
                self.lingering = True
                self.linger_since = self.app.clock
                if self.read_paused:
                    self.read_paused = False
                    transport.resume_reading()
            else:
                transport.close()
            return
        self._answered()

    def _answered(self) -> None:
        """The answer is written: the next request of the connection (pipelined, or paused) starts."""
        self.busy = False
        self.since = self.app.clock
        if self.pipeline or self.read_paused:
            self._advance()
        if self._continue:
            self._continue_if_due()
        self._rested()

    def _rested(self) -> None:
        """Answered and not busy again: a candidate to make room at the connection cap."""
        if not self.busy and self.listener is not None:
            self.listener.rested[self] = None

    def next_request(self) -> None:
        """The answer was written in pieces (a stream): go on with the connection's next request."""
        if not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            return
        self._answered()
