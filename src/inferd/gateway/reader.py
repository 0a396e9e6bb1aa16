"""Reading one request off a connection, with the edge's limits applied as early as the
information exists: the head's size while it arrives; the framing (upgrade, content and transfer
codings), the route, the body limit and the API key when the headers end (``app.admit``); the
body's size, and the bytes all connections hold, as chunks arrive; ``Expect: 100-continue``.

``RequestReader`` holds the httptools callbacks; ``HttpConnection`` (``gateway/http.py``)
extends it with the order of requests and the answers: it provides ``refuse``, ``_start`` and
``_advance``, and keeps ``transport``, ``busy``, ``pipeline`` and ``write_paused``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import httptools

from inferd.errors import body_too_large
from inferd.gateway import edge
from inferd.gateway.framing import SEVERAL, SEVERAL_HOSTS, coding_refusal, route_path, without_upgrade
from inferd.gateway.waiting import QUEUED
from inferd.gateway.wire import WANTED_HEADERS, Request, refused_request

if TYPE_CHECKING:
    from inferd.gateway.server import HttpApp

# Where a connection is in its current request (the sweep applies the matching timeout).
HEAD, BODY, IDLE = 0, 1, 2


# Headers whose lines are one comma-separated list (RFC 9110 5.3): a second line must not hide
# the first (``Transfer-Encoding: gzip`` then ``chunked`` was read as chunked alone).
LISTS = frozenset((b"accept", b"transfer-encoding", b"content-encoding"))
# A read is parsed this many bytes at a time, and a connection's turn ends after BURST requests
# (the rest of its read is parsed on a later turn of the event loop): pipelined requests cannot
# keep the other clients waiting. A request that arrives in one small read is parsed at once.
SLICE = 1024
BODY_SLICE = 1 << 16
BURST = 8


class RequestReader(asyncio.Protocol):
    """The httptools callbacks of one connection: a request's head, body and trailer fields."""

    # kept by the connection (gateway/http.py)
    transport: asyncio.Transport | None
    busy: bool
    pipeline: deque[Request]
    write_paused: bool

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        self.limits = app.limits
        self.parser = httptools.HttpRequestParser(self)
        # phase and since (for the sweep), head bytes, pauses, an early refusal
        self.phase = HEAD
        self.since = app.clock
        self.head_bytes = 0
        self.read_paused = False
        self.burst = 0  # requests read since this turn of the event loop began (``BURST``)
        self.unread: bytes | memoryview = (
            b""  # received, held back unparsed (``_read``): a view, never copied
        )
        self.lingering = False
        self.broken = False  # an unparsable request came behind others: their answers go first
        self._admitting = False
        self._continue = False  # a 100 Continue owed once the answers before it are written
        self._plain_head: bytes | None = None  # an upgrade request's head, to be read again without it
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

    # what the connection does (gateway/http.py)

    def refuse(self, status: int, message: str, path: bytes = b"") -> None:
        """Answer an error before the request is read (or when it cannot be parsed), then close."""
        raise NotImplementedError

    def _start(self, request: Request) -> None:
        """Answer ``request`` (nothing before it is unanswered)."""
        raise NotImplementedError

    def answer_head(self, request: Request) -> None:
        """Answer ``request`` from its head alone, before (the rest of) its body is read, then close."""
        raise NotImplementedError

    def _advance(self) -> None:
        """Start pipelined requests while nothing is running; resume reading when few are left."""
        raise NotImplementedError

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.broken:  # answered early, or after a bad request: read and drop
            return
        self.burst = 0
        self._read(data)

    def _read(self, data: bytes | memoryview) -> None:
        """Parse ``data`` a slice at a time. Once reading pauses (the pipeline is full, the client
        does not read its answers) or ``BURST`` requests were read in this turn, the rest waits in
        ``unread`` (a view of the read, not copied at each turn). One read holds up to 256 KiB,
        thousands of small pipelined requests, and was parsed (each answered, where the gateway
        answers alone) before any other client was served: 30 connections pipelining
        ``GET /healthz`` held a prediction back for 25 s."""
        end = len(data)
        view = memoryview(data) if end > SLICE else None
        start = 0
        while start < end:
            if start and (self.read_paused or self.burst >= BURST):
                self._hold_back(view[start:] if view is not None else data[start:])
                return
            step = self._body_left() if self.phase == BODY else SLICE
            piece = data if view is None else view[start : start + step]
            start += len(piece)
            # Counted until the head ends, and in a body from its last byte on (``on_body`` sets it
            # back to 0): a chunked body's framing and trailer fields are bounded as a head is.
            self.head_bytes += len(piece)
            self._feed(piece)
            if self.head_bytes > self.limits.max_header_bytes and not self.lingering and not self.broken:
                limit = self.limits.max_header_bytes
                if self.phase == HEAD:
                    self.refuse(431, f"the request line and headers are larger than {limit} bytes")
                elif self.phase == BODY:
                    self._trailers_too_large()
            if self.lingering or self.broken:
                return

    def _body_left(self) -> int:
        """How much to parse at once inside a body: the rest of it (or a large slice of a
        chunked one); a body parsed a small slice at a time cost 2.5 times the CPU."""
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit():
            return max(SLICE, int(length) - self._size)
        return BODY_SLICE

    def _hold_back(self, rest: bytes | memoryview) -> None:
        """Keep ``rest`` unparsed, reading paused, until the pipeline has room (``_advance`` calls
        ``read_again``) or, after a burst, until the event loop has served the others."""
        self.unread = rest
        transport = self.transport
        if transport is None:
            return
        if not self.read_paused:  # a burst: on with the rest once the others had their turn
            asyncio.get_running_loop().call_soon(self._read_unread)
        transport.pause_reading()

    def _read_unread(self) -> None:
        rest, self.unread = self.unread, b""
        if not rest or self.transport is None or self.lingering or self.broken:
            return
        self.burst = 0
        self._read(rest)
        if not self.unread and not self.read_paused and self.transport is not None:
            self.transport.resume_reading()

    def read_again(self) -> None:
        """Read again (what was held back first): the reasons to pause are gone."""
        self.read_paused = False
        if self.phase != IDLE:  # the pause was ours: the head's or body's clocks start again
            self.since = self.body_since = self.app.clock
        if self.unread:
            asyncio.get_running_loop().call_soon(self._read_unread)
        elif self.transport is not None:
            self.transport.resume_reading()

    def _trailers_too_large(self) -> None:
        limit = self.limits.max_header_bytes
        self.refuse(431, f"the chunked body's framing and trailer fields are larger than {limit} bytes")

    def _feed(self, data: bytes | memoryview) -> None:
        while True:  # once more for each request read again without its Upgrade (no recursion)
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as upgrade:
                head = self._plain_head
                if head is None:
                    # The request asked for another protocol (``Upgrade`` without a body,
                    # ``CONNECT``): it is answered as plain HTTP and the connection ends there
                    # (its answer says so); what follows is dropped.
                    self.broken = True
                    return
                # Its body is the request's, not another protocol's: read it again, as plain
                # HTTP (the rest of the read as a view: pipelined ones are not copied each time).
                self._plain_head = None
                self.parser = httptools.HttpRequestParser(self)
                data = memoryview(data)[upgrade.args[0] :]
                try:
                    self.parser.feed_data(head)
                except httptools.HttpParserError as exc:
                    if not self.lingering:
                        self.refuse(400, f"malformed HTTP request: {exc}")
                    return
            except httptools.HttpParserError as exc:
                if not self.lingering:
                    self.refuse(400, f"malformed HTTP request: {exc}")
                return

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
            elif name in LISTS and name in self._headers:
                value = self._headers[name] + b", " + value  # a list: its lines are one (RFC 9110 5.3)
            elif name == b"host" and name in self._headers:
                value = SEVERAL
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
        if self._headers.get(b"host") == SEVERAL:
            self.refuse(400, SEVERAL_HOSTS)
            return
        self._path, self._query = route_path(self._url)
        headers = self._headers
        if b"upgrade" in headers and self.parser.should_upgrade():
            # an offer ignored: the request is read again without it (``_feed``)
            self._plain_head = without_upgrade(self.parser, self._url, headers)
            if self._plain_head is not None:
                return
        if b"content-encoding" in headers or b"transfer-encoding" in headers:
            refused = coding_refusal(headers)
            if refused is not None:
                self.refuse(*refused, self._path)
                return
        self._admitting = True
        try:
            # ``self`` is always an HttpConnection (the only subclass); a cast would cost a call.
            limit = self.app.admit(self, self.parser.get_method(), self._path, headers)  # type: ignore[arg-type]
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
            self.since = self.body_since = self.app.clock  # the body may come now: its clocks start

    @property
    def waits_for_continue(self) -> bool:
        """The client waits for the 100 Continue the gateway holds back behind earlier answers:
        its body's silence is the gateway's doing (the sweep does not time it)."""
        return self._continue and (self.busy or bool(self.pipeline))

    @property
    def body_bytes(self) -> int:
        """Bytes of the current request's body received so far."""
        return self._size

    def on_body(self, body: bytes) -> None:
        self.head_bytes = 0
        if self.lingering:
            return
        self.since = self.app.clock
        self._size += len(body)
        if self._too_large:  # read and dropped (its 413 is owed): arriving all the same, for the sweep
            return
        if self._size > self._limit:  # chunked bodies are counted as they arrive
            self._body = []
            self._release()
            self._body_too_large()
            return
        self._body.append(body)
        self._held += len(body)
        app = self.app
        app.bodies_held += len(body)
        if app.bodies_held + QUEUED.bytes > self.limits.max_body_buffer:
            # Many bodies arriving at once (slowly, from many connections), or waiting in the
            # queues of slow APIs, would hold the gateway's memory without end: the one that
            # crosses the budget is shed.
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

    def _body_too_large(self) -> None:
        if self.busy or self.pipeline:  # answers go out in order: this one after the earlier ones
            self._too_large = True
        elif self.app.routeless(self._path):
            # A chunked body to a mistyped name: its route's 404 (``app.admit``), not a 413
            self.answer_head(Request(self.parser.get_method(), self._path, b"", self._headers, b"", False))
        else:
            self.refuse(413, body_too_large(self._limit), self._path)

    def on_message_complete(self) -> None:
        if self.lingering or self.broken or self._plain_head is not None:
            return
        self.phase = IDLE
        self._continue = False
        if self._too_large:
            message = body_too_large(self._limit)
            self.pipeline.append(refused_request(413, message, self._path))
            self._advance()
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._release()
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive()
        if method == b"CONNECT" or (b"upgrade" in self._headers and self.parser.should_upgrade()):
            keep_alive = False  # answered as plain HTTP; what follows is another protocol's
        request = Request(method, self._path, self._query, self._headers, body, keep_alive)
        self.burst += 1
        if self.busy or self.write_paused or self.pipeline:
            self.pipeline.append(request)
            if len(self.pipeline) >= self.limits.max_pipeline and not self.read_paused and self.transport:
                self.read_paused = True
                self.transport.pause_reading()
        else:
            self._start(request)
