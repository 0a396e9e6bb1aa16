"""Cortex v0.10's ``GET <endpoint>/signature``: the model's inputs as ``cortex get -v`` read them.

Cortex v0.10.0 and v0.10.1 routed every path under an API's endpoint to its container, so
``<api url>/signature`` reached the container's ``/predict/signature`` and answered
``{"signature": {input: {"shape": [...], "type": "float32"}}}`` (a dynamic dimension -1 for
TensorFlow; for ONNX onnxruntime's ``NodeArg.shape``, null or the dimension's name such as
``"batch"``; the NumPy dtype's name, TensorFlow's ``string`` for text). Clients read input names there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from inferd import codec
from inferd.gateway import auth

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
        fields = {spec["name"]: _cortex_field(spec, queue.info) for spec in inputs}
        conn.respond(200, orjson.dumps({"signature": fields}))
    return True


def _cortex_field(spec: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    kind = spec["dtype"]
    if kind == "object":  # text: NumPy's object in Cortex's ONNX answer, TensorFlow's string
        kind = "string" if info.get("model_format") == "tensorflow" else "object"
    shape = spec["shape"]
    if info.get("model_format") == "onnx":  # onnxruntime's NodeArg.shape: null, or the dimension's name
        names = spec.get("dim_names") or [None] * len(shape or ())
        shape = [names[i] or None if size == -1 else size for i, size in enumerate(shape or ())]
    return {"shape": shape, "type": kind}


def sample_body(request: Request) -> bytes:
    """The body a ``POST`` to an API's endpoint is predicted on: ``null`` for an empty one that
    does not say it is JSON. Cortex read bodies with Flask 1.1's ``request.get_json()``, which
    is None without a JSON ``Content-Type``, so ``curl -X POST URL`` (or ``requests.post(url)``)
    ran the predictor on None; an empty body said to be JSON stays a 400, as it was."""
    body = request.body
    if len(body) >= 64 or bytes(body).strip() or _says_json(request.headers):
        return body
    return b"null"


def _says_json(headers: dict[bytes, bytes]) -> bool:
    """Whether a Content-Type is JSON as Flask 1.1's ``is_json`` read it: ``application/json``
    or ``application/...+json``, parameters aside."""
    kind = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))
