"""What the head of a request says about how to read it, checked when its headers end: the route's
path (decoded, slashes merged), one ``Host``, the content and transfer codings the gateway
takes, and an ``Upgrade`` offer it ignores. ``reader.py`` applies them; these are kept apart as
the rules of HTTP/1.1 they are.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import httptools

from inferd.gateway.wire import origin_form
from inferd.protocols import cortex

_SLASHES = re.compile(rb"//+")
# The value kept for a second Host line: no parsed value holds a NUL (httptools refuses one).
SEVERAL = b"\x00"
# RFC 9112 3.2 (a proxy and the gateway could each take another line for the one). No Host is
# answered: never read here, and haproxy's ``option httpchk GET /healthz HTTP/1.1`` sends none
# (a 400 marked the server DOWN; test_hostile_http.py).
SEVERAL_HOSTS = "a request must carry one Host header, not several"


def route_path(url: bytes) -> tuple[bytes, bytes]:
    """The path a route matches, and the query, of a request target."""
    path, _, query = (url if url[:1] == b"/" else origin_form(url)).partition(b"?")
    # Routes match the decoded path, as TF Serving, Flask and ASGI servers do: a client that
    # quotes a name (``quote("iris:predict")`` is ``iris%3Apredict``) reaches the same route.
    if b"%" in path:
        path = unquote_to_bytes(path)
    # Repeated slashes are one, as nginx merges them: a client's base URL ending in "/" joined
    # with "/d/iris" asks for "//d/iris" (it was a 404 naming the right endpoint).
    return (_SLASHES.sub(b"/", path) if b"//" in path else path), query


def coding_refusal(headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """The status and message refusing a body coded in a way the gateway does not undo; None
    when it is plain or chunked."""
    refused = cortex.coding_refusal(headers.get(b"content-encoding"))
    if refused is not None:
        return 415, refused
    transfer = headers.get(b"transfer-encoding")
    if transfer is not None:
        # httptools undoes only chunked, the last coding: with others before it the body would
        # reach the handler still coded (RFC 9112 6.1: 501).
        other = [c for c in (c.strip().lower() for c in transfer.split(b",")) if c and c != b"chunked"]
        if other:
            shown = other[0].decode("latin-1")[:64]
            return 501, f"Transfer-Encoding {shown} is not supported: send the body with chunked alone"
    return None


def without_upgrade(
    parser: httptools.HttpRequestParser, url: bytes, headers: dict[bytes, bytes]
) -> bytes | None:
    """The head of a request that offers another protocol (``Upgrade``), as the gateway read it,
    less the offer: the request is read again as plain HTTP. None when the offer is not ignored
    (a GET for a WebSocket): the request is answered as plain HTTP, and the connection ends there.

    The parser skips an upgrade request's body and hands what follows the headers to the new
    protocol. No upgrade is served, and RFC 9110 7.8 lets a server ignore the offer, as a POST
    from Java's HttpClient (HTTP/2 by default: Upgrade: h2c) or curl --http2 expects: a request
    with a body is read again without it; so is a GET offering h2c (no HTTP/2 comes before a 101:
    closing made Java's client open a connection per GET)."""
    method = parser.get_method()
    if method in (b"GET", b"HEAD", b"OPTIONS", b"CONNECT") and headers[b"upgrade"].strip().lower() != b"h2c":
        return None
    lines = [b"%s %s HTTP/%s" % (method, url, parser.get_http_version().encode())]
    lines += [name + b": " + value for name, value in headers.items() if name != b"upgrade"]
    lines.append(b"Connection: keep-alive" if parser.should_keep_alive() else b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"
