"""Cortex v0.10's ``GET <endpoint>/signature`` on the gateway: the model's inputs as ``cortex get -v``
read them (protocols/cortex.py holds the answer and why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from inferd import codec
from inferd.gateway import auth
from inferd.protocols import cortex

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.wire import Request

SUFFIX = b"/signature"


def signature(gateway: Gateway, conn: HttpConnection, request: Request) -> bool:
    """Answer ``request`` if its path is an API's endpoint followed by ``/signature``."""
    path = request.path.rstrip(b"/")
    if not path.endswith(SUFFIX):
        return False
    queue = gateway.endpoints.get(path[: -len(SUFFIX)])
    if queue is None:
        return False
    if request.method not in (b"GET", b"HEAD"):
        gateway.method_not_allowed(conn, request, b"GET, HEAD")
        return True
    if not auth.authorized(gateway, conn, request.headers, queue, "cortex"):
        return True
    inputs = queue.info.get("inputs")
    if not queue.tensors:
        message = f"api '{queue.name}' is a Python predictor: it has no model signature"
        conn.respond(404, codec.error_body(message))
    elif inputs is None:
        conn.respond(503, codec.error_body(f"api '{queue.name}' is not ready: its model is loading"))
    else:
        conn.respond(200, orjson.dumps(cortex.signature(queue.info)))
    return True


def sample_body(request: Request) -> bytes:
    """The body a ``POST`` to an API's endpoint is predicted on (``protocols.cortex.sample_body``)."""
    return cortex.sample_body(request.body, request.headers.get(b"content-type", b""))
