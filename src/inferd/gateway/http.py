"""A thin HTTP/1.1 server connection: ``asyncio.Protocol`` + httptools, one write per response.

Measured (DESIGN.md section 4), an ASGI stack cost more CPU per request than a whole
hand-written server, so the hot routes go through this: no request objects, no Task or Future
per request, keep-alive and pipelining (answered in order), ``Expect: 100-continue``, and a
body size limit enforced while reading.

Reading a request, with its limits, is ``RequestReader``'s (``gateway/reader.py``); this module
holds the connection's life, the order of its requests and the writing of their answers. What a
connection needs from its server is ``HttpApp`` (``gateway/server.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, cast

from inferd import codec
from inferd.gateway import edge, wire
from inferd.gateway.queue import ApiQueue
from inferd.gateway.reader import BODY, RequestReader
from inferd.gateway.wire import (
    KEEP_ALIVE,
    RETRY_AFTER,
    TIMING,
    Request,
    next_request_id,
    refused_request,
    status_line,
    valid_id,
)

if TYPE_CHECKING:
    from inferd.gateway.edge import Listener
    from inferd.gateway.server import HttpApp
    from inferd.gateway.shadow import ShadowCopy, ShadowRoute
    from inferd.gateway.stream import Stream
    from inferd.replica.handle import ReplicaHandle

log = logging.getLogger("inferd.gateway")

# The status counted and logged for a request whose client hung up before its answer (nginx's
# "client closed request"): the answer, if any came, was never read.
CLIENT_CLOSED = 499
LEFT = codec.error_body("the client closed the connection before its answer")  # its access log line
NO_LENGTH = b"\r\nX-Request-ID: "  # a 204's head goes on from its Content-Type


class HttpConnection(RequestReader):
    """One client connection. Also the ``Waiter`` of the request it sent to a replica.

    Limits (``EdgeLimits``) are decided as early as the information exists: the head size while
    it arrives, the route, body limit and API key when the headers end (``app.admit``), the body
    size as chunks arrive. Pipelined requests wait in order, at most ``max_pipeline`` of them
    before reading pauses; reading also pauses while the client does not read our answers.
    """

    def __init__(self, app: HttpApp) -> None:
        super().__init__(app)
        self.common_headers = app.common_headers
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
        self.write_paused = False
        self.write_paused_since = 0.0
        self.linger_since = 0.0
        self._early = False
        self.listener: Listener | None = None  # the one that accepted it (its idle candidates)
        self._advancing = False
        self.headers: dict[bytes, bytes] = {}
        self.stream: Stream | None = None  # the answer being streamed (gateway/stream.py)
        self.dormant = False  # counted in ``ApiQueue.dormant`` (edge.dormant)
        app.connections.add(self)  # counted from the accept on (the connection cap)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.since = self.app.clock

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.dormant:
            self.dormant = False
            ApiQueue.dormant -= 1
        self.transport = None
        self.pipeline.clear()
        self._release()
        if self.write_paused:
            self.app.answers_held.release(self)
        if self.listener is not None:
            self.listener.forget(self)
        self.app.connection_closed(self)
        stream = self.stream
        if stream is not None:
            stream.client_left()
        queue = self.queue
        if queue is not None and not self.replica_id:  # still queued: it will never be sent
            self.queue = None
            queue.withdraw(self)
            self.app.finished(queue, CLIENT_CLOSED, self, b"", LEFT)
        elif queue is not None and (stream is None or stream.handle is None):
            queue.left(self)  # before its first item: the replica stops the stream at it

    def pause_writing(self) -> None:
        """The client does not read our answers: stop reading its requests until it does."""
        self.write_paused = True
        self.write_paused_since = self.app.clock
        if self.transport is not None:
            self.app.answers_held.hold(self, self.transport.get_write_buffer_size())
        if self.stream is not None:
            self.stream.pause()
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.app.answers_held.release(self)
        if self.stream is not None:
            self.stream.resume()
        self._advance()
        self._rested()

    # the order of requests

    def _start(self, request: Request) -> None:
        self.busy = True
        if self.dormant:  # a client again (edge.dormant)
            self.dormant = False
            ApiQueue.dormant -= 1
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
                self.app.refused(self, request.query, status, request.body)
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
        self.head_only = self.parser.get_method() == b"HEAD"  # its answer has no body
        self.extra_headers = self.trace = self.client_span = b""  # its span is its own
        given = headers.get(b"x-request-id")
        self.request_id = given if given and valid_id(given) else next_request_id()

    def answer_head(self, request: Request) -> None:
        """Answer ``request`` from its head alone, before (the rest of) its body is read (a route
        with no API): as its own request, with its own id and none of the last one's headers; the
        connection closes after it, what the client still sends read and dropped a while."""
        self._early = True
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
                self.read_again()
        finally:
            self._advancing = False

    # answers

    def refuse(self, status: int, message: str, path: bytes = b"") -> None:
        """Answer an error before the request is read (or when it cannot be parsed), then close.
        A request to ``path`` (an API's route) is counted as that API's."""
        if self.busy or self.pipeline or self.write_paused:  # answered after the earlier requests
            self.broken = True
            self.pipeline.append(refused_request(status, message, path))
            return
        self.busy = True
        self._early = True
        self.head_only = False
        self.extra_headers = b""
        given = self._headers.get(b"x-request-id") if path else None
        self.request_id = given if given and valid_id(given) else next_request_id()
        body = codec.error_body(message)
        self.respond(status, body, close=True)
        if path:
            self.app.refused(self, path, status, body)

    def body_too_slow(self) -> None:
        """The sweep found the body of the request being read too slow (``edge.sweep``): a 408,
        then the close. A bare close was what a proxy passing the body on as it comes (haproxy,
        nginx's ``proxy_request_buffering off``) answered as its 502, blaming the gateway."""
        limit = self.limits.header_timeout
        self.refuse(
            408,
            f"the request body did not arrive in time (it paused over {limit:g} s, or came slower "
            f"than {edge.MIN_BODY_RATE} bytes a second past that)",
            self._path,
        )

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
            counted = CLIENT_CLOSED if self.closed and not (self.stream and self.stream.failed) else status
            headers = self.app.finished(
                queue,
                counted,
                self,
                meta,
                LEFT if counted == CLIENT_CLOSED else body if status >= 400 else b"",
            )
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
                    wire.date,
                    b"Content-Type: ",
                    content_type,
                    # RFC 9110 8.6: a 204 (a CORS preflight's answer) carries no Content-Length
                    b"\r\nContent-Length: %d\r\nX-Request-ID: " % len(body) if status != 204 else NO_LENGTH,
                    self.request_id or next_request_id(),
                    b"\r\n",
                    self.common_headers,
                    self.extra_headers,
                    headers,
                    b"Connection: close\r\n\r\n" if close else KEEP_ALIVE,
                    b"" if self.head_only else body,
                )
            )
        )
        if self.write_paused:  # more for a client that does not read: counted (gateway/held.py)
            self.app.answers_held.hold(self, transport.get_write_buffer_size())
        if close:
            self.pipeline.clear()
            if early and transport.can_write_eof():
                # The client may still be sending: read and drop a while so it sees this answer.
                transport.write_eof()
                self.lingering = True
                self.linger_since = self.app.clock
                self.unread = b""  # read and dropped from now on
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
