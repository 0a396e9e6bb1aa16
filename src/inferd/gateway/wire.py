"""The small wire pieces of HTTP/1.1 the gateway writes and reads: status lines, request ids.

Kept apart from ``http.py`` (the connection) and ``reader.py`` (reading a request) so that those
modules stay about the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from inferd import codec

# On every answer. Allowed headers matter to a preflight only, which names them itself
# (``gateway.app.ALLOW_CORS``): a second ``Access-Control-Allow-Headers`` here doubled it.
# A script on another origin reads only the answer headers exposed here (the API a splitter
# picked, the request id, the trace, the gateway's latency, the length of a V2 answer's JSON part
# before its binary tensors, a 503's Retry-After, a 401's scheme).
CORS = (
    b"Access-Control-Allow-Origin: *\r\n"
    b"Access-Control-Expose-Headers: X-Inferd-Api, X-Request-ID, traceparent, Server-Timing, "
    b"Inference-Header-Content-Length, Retry-After, WWW-Authenticate\r\n"
)
RETRY_AFTER = b"Retry-After: 1\r\n"
# Said on every answer that keeps the connection: an HTTP/1.0 client (``ab -k``) waits for the
# close otherwise.
KEEP_ALIVE = b"Connection: keep-alive\r\n\r\n"
_HEADS: dict[int, bytes] = {}


def date_line() -> bytes:
    """The ``Date`` header line RFC 9110 6.6.1 asks of a server with a clock (IMF-fixdate)."""
    return b"Date: %s\r\n" % formatdate(usegmt=True).encode()


# On every answer; the gateway's tick writes it anew ten times a second (gateway/sweeper.py), so
# no answer formats a time.
date = date_line()


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


def refused_request(status: int, message: str, path: bytes = b"") -> Request:
    """A pipelined request refused before it was read: its answer waits for the earlier ones'
    (the status rides in ``path`` and the path it was sent to in ``query``; no method marks it)."""
    return Request(b"", b"%d" % status, path, {}, codec.error_body(message), False)


# Headers the gateway looks at; everything else is skipped while parsing.
# A request with ``X-Inferd-Timing: 1`` gets the gateway's latency back in ``Server-Timing``
# (``inferd replay`` compares it with the latency a payload log recorded, measured the same way).
TIMING = b"x-inferd-timing"
# ``inferd replay``'s requests carry ``X-Inferd-Replay: <replay_mark(operator token)>``: not real
# traffic, so neither recorded in the payload log of the API they are replayed against nor copied
# to its shadow. Any other value is ignored: a client's own ``X-Inferd-Replay: 1`` kept its
# requests out of the payload log and the shadow.
REPLAY = b"x-inferd-replay"


def replay_mark(token: str) -> bytes:
    """The ``X-Inferd-Replay`` value of the operator whose token is ``token`` (derived, so that the
    token itself never travels on the gateway's port)."""
    return hmac.new(token.encode(), b"inferd replay", hashlib.sha256).hexdigest().encode()


WANTED_HEADERS = frozenset(
    {
        b"content-length",
        b"expect",
        b"content-type",
        b"x-request-id",
        b"authorization",
        b"x-api-key",
        b"inference-header-content-length",
        b"accept",
        b"traceparent",  # W3C Trace Context (gateway/tracing.py)
        b"upgrade",  # ignored for a request with a body (gateway/framing.py)
        b"content-encoding",  # refused unless identity: bodies are read as sent
        b"host",  # never two (gateway/reader.py)
        b"transfer-encoding",  # refused unless chunked alone: httptools undoes chunked only
        TIMING,
        REPLAY,
    }
)


def origin_form(target: bytes) -> bytes:
    """The path and query of a request target: an absolute-form one (``http://host:8888/p?q``,
    which RFC 9112 3.2.2 says a server must accept) loses its scheme and authority."""
    if target[:1] == b"/" or not target[:8].lower().startswith((b"http://", b"https://")):
        return target
    rest = target.partition(b"://")[2]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    return path if path[:1] == b"/" else b"/" + path


_PREFIX = os.urandom(4).hex().encode()
_counter = itertools.count(1)


def next_request_id() -> bytes:
    """A request id unique to this gateway process (cheaper than a uuid per request)."""
    return b"%s-%x" % (_PREFIX, next(_counter))


def valid_id(value: bytes) -> bool:
    return len(value) <= 128 and all(0x21 <= byte <= 0x7E for byte in value)


def debug_asked(query: bytes) -> bool:
    """Cortex's ``?debug=true`` (its case aside): the first ``debug`` parameter says, as Flask's
    ``request.args.get`` read it; ``?nodebug=true`` is not it."""
    for part in query.split(b"&") if query else ():
        name, _, value = part.partition(b"=")
        if name == b"debug":
            return value.lower() == b"true"
    return False


def parse_query(query: bytes) -> dict[str, Any]:
    """The query string as a dict (last value wins); only cold paths use it."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query.decode("latin-1")))
