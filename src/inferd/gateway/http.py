"""A thin HTTP/1.1 server connection: ``asyncio.Protocol`` + httptools, one write per response.

Measured (DESIGN.md section 4), an ASGI stack cost more CPU per request than a whole
hand-written server, so the hot routes go through this: no request objects, no Task or Future
per request, keep-alive and pipelining (answered in order), ``Expect: 100-continue``, and a
body size limit enforced while reading.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from http import HTTPStatus
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, cast

import httptools

from inferd import codec

if TYPE_CHECKING:
    from inferd.gateway.queue import ApiQueue

log = logging.getLogger("inferd.gateway")


class HttpApp(Protocol):
    """What a connection needs from the server it belongs to (the gateway, the admin API)."""

    body_limit: int
    connections: set[HttpConnection]

    def handle(self, conn: HttpConnection, request: Request) -> None:
        """Answer ``request`` now or later with ``conn.respond``."""
        ...

    def finished(self, queue: ApiQueue, status: int, conn: HttpConnection, meta: bytes) -> bytes:
        """Account for one answered request; extra response headers (from the replica's metadata)."""
        ...


CORS = b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: *\r\n"
RETRY_AFTER = b"Retry-After: 1\r\n"
_HEADS: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    head = _HEADS.get(status)
    if head is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        head = f"HTTP/1.1 {status} {phrase}\r\n".encode()
        _HEADS[status] = head
    return head


class Request:
    """One parsed request: what the router needs and nothing more."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query")

    def __init__(
        self,
        method: bytes,
        path: bytes,
        query: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


# Headers the gateway looks at; everything else is skipped while parsing.
WANTED_HEADERS = frozenset(
    {
        b"content-length",
        b"expect",
        b"content-type",
        b"x-request-id",
        b"authorization",
        b"x-api-key",
        b"inference-header-content-length",
    }
)


class HttpConnection(asyncio.Protocol):
    """One client connection. Also the ``Waiter`` of the request it sent to a replica."""

    def __init__(self, app: HttpApp) -> None:
        self.app = app
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
        self.keep_alive = True
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.app.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.respond(400, codec.error_body("protocol upgrades are not supported"), close=True)
        except httptools.HttpParserError as exc:
            self.respond(400, codec.error_body(f"malformed HTTP request: {exc}"), close=True)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in WANTED_HEADERS:
            self._headers[name] = value

    def on_headers_complete(self) -> None:
        limit = self.app.body_limit
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._too_large = True
        elif self._headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._size += len(body)
        if self._size > self.app.body_limit:
            self._too_large = True
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            limit = self.app.body_limit
            self.respond(413, codec.error_body(f"the request body is larger than {limit} bytes"), close=True)
            return
        url = self._url
        path, _, query = url.partition(b"?")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            self.parser.get_method(),
            path,
            query,
            self._headers,
            body,
            self.parser.should_keep_alive(),
        )
        if self.busy:
            self.pipeline.append(request)
        else:
            self._start(request)

    def _start(self, request: Request) -> None:
        self.busy = True
        self.keep_alive = request.keep_alive
        self.path = request.path
        given = request.headers.get(b"x-request-id")
        self.request_id = given if given and _valid_id(given) else next_request_id()
        try:
            self.app.handle(self, request)
        except Exception:  # a bug of ours: answer 500, keep the connection and the server alive
            log.exception("the gateway failed on %s", request.path.decode("utf-8", "replace"))
            self.respond(500, codec.error_body("internal error in the gateway (see its log)"))

    # answers

    def submit(self, queue: ApiQueue, kind: bytes, body: bytes, protocol: str = "cortex") -> None:
        """Hand the request to ``queue``; ``on_reply`` answers the client later."""
        self.queue = queue
        self.protocol = protocol
        self.replica_id = ""
        self.started = self.sent_at = perf_counter()
        queue.submit(self, kind, body)

    def on_reply(self, status: int, body: bytes, meta: bytes) -> None:
        queue = self.queue
        self.queue = None
        headers = b""
        if queue is not None:
            headers = self.app.finished(queue, status, self, meta)
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
        if transport is None or transport.is_closing():
            return
        close = close or not self.keep_alive
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
                    CORS,
                    headers,
                    b"Connection: close\r\n\r\n" if close else b"\r\n",
                    body,
                )
            )
        )
        if close:
            transport.close()
            return
        self.busy = False
        if self.pipeline:
            self._start(self.pipeline.popleft())


_PREFIX = os.urandom(4).hex().encode()
_counter = itertools.count(1)


def next_request_id() -> bytes:
    """A request id unique to this gateway process (cheaper than a uuid per request)."""
    return b"%s-%x" % (_PREFIX, next(_counter))


def _valid_id(value: bytes) -> bool:
    return len(value) <= 128 and all(0x21 <= byte <= 0x7E for byte in value)


def parse_query(query: bytes) -> dict[str, Any]:
    """The query string as a dict (last value wins); only cold paths use it."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query.decode("latin-1")))
