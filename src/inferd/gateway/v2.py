"""Open Inference Protocol (KServe V2) routes; the version is "1".

A model is named ``deployment.api``, or by the API's name alone when no other deployment has an
API of that name (``Gateway.models``).

Health and metadata are answered here from what the replicas reported when they became ready;
``infer`` bodies go to a replica untouched (the V2 codec runs there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from inferd import __version__, codec
from inferd.errors import InputError
from inferd.gateway import auth
from inferd.gateway.stream import GENERATE, GENERATE_STREAM, Stream
from inferd.protocols import v2_models
from inferd.replica import messages

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.wire import Request

VERSION = "1"
EXTENSIONS = [
    "binary_tensor_data",
    "model_repository(list)",
    "model_configuration",
    "classification",
    "generate",
]
READS = (b"GET", b"HEAD")  # what the routes that are not infer or generate answer


def route(gateway: Gateway, conn: HttpConnection, request: Request) -> None:
    parts = request.path.decode("utf-8", "replace").rstrip("/").split("/")[2:]  # after "/v2"
    method = request.method
    reading = method in READS
    if not parts:
        if not reading:
            return gateway.method_not_allowed(conn, request, b"GET, HEAD")
        return conn.respond(
            200, orjson.dumps({"name": "inferd", "version": __version__, "extensions": EXTENSIONS})
        )
    if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
        if not reading:
            return gateway.method_not_allowed(conn, request, b"GET, HEAD")
        if parts[1] == "live":
            return conn.respond(200, b'{"live":true}')
        ready = gateway.ready
        return conn.respond(200 if ready else 503, orjson.dumps({"ready": ready}))
    if parts == ["repository", "index"]:
        if method != b"POST":
            return gateway.method_not_allowed(conn, request, b"POST")
        return _repository_index(gateway, conn, request)
    if parts[0] != "models":
        return conn.respond(404, codec.error_body(f"no V2 route {request.path.decode('utf-8', 'replace')}"))
    if len(parts) == 1:
        if not reading:
            return gateway.method_not_allowed(conn, request, b"GET, HEAD")
        shown = sorted(gateway.model_name(queue) for queue in gateway.visible(request.headers))
        return conn.respond(200, orjson.dumps({"models": shown}))
    name, rest = parts[1], parts[2:]
    # a GET is not a splitter's request; generate's JSON reaches a Python predictor, tensors do not
    generate = bool(rest) and rest[-1] in ("generate", "generate_stream")
    queue = gateway.model(conn, name, method == b"POST", tensors=not generate)
    if queue is None:
        return conn.respond(*gateway.not_found(gateway.unknown_model(name)))
    if not auth.authorized(gateway, conn, request.headers, queue, "v2"):
        return None
    given = request.headers.get(b"traceparent")
    if given is not None or gateway.tracer is not None:  # W3C Trace Context, as on an endpoint
        gateway.trace(conn, given)
    if len(rest) >= 2 and rest[0] == "versions":
        if rest[1] != VERSION:
            return conn.respond(
                404, codec.error_body(f"model '{name}' has no version '{rest[1]}' (it has: 1)")
            )
        rest = rest[2:]
    if (not rest or rest in (["ready"], ["config"])) and not reading:
        return gateway.method_not_allowed(conn, request, b"GET, HEAD")
    if not rest:
        if not queue.info:
            return conn.respond(503, codec.error_body(f"model '{name}' is not ready yet"))
        return conn.respond(200, orjson.dumps(v2_models.model_metadata(name, VERSION, queue.info)))
    if rest == ["config"]:
        if not queue.info:
            return conn.respond(503, codec.error_body(f"model '{name}' is not ready yet"))
        return conn.respond(200, orjson.dumps(v2_models.model_config(name, queue.info)))
    if rest == ["ready"]:
        ready = queue.serving
        return conn.respond(200 if ready else 503, orjson.dumps({"name": name, "ready": ready}))
    if rest == ["infer"]:
        if method != b"POST":
            return gateway.method_not_allowed(conn, request, b"POST")
        length = request.headers.get(b"inference-header-content-length")
        if length is None:
            return gateway.dispatch(conn, queue, messages.V2_INFER, request.body, "v2")
        if not length.isdigit():
            return conn.respond(400, codec.error_body("Inference-Header-Content-Length must be a number"))
        if int(length) > len(request.body):  # also keeps it within the frame's 32-bit field
            message = "Inference-Header-Content-Length is larger than the request body"
            return conn.respond(400, codec.error_body(message))
        body = messages.LENGTH.pack(int(length)) + request.body
        return gateway.dispatch(conn, queue, messages.V2_INFER_BINARY, body, "v2")
    if rest == ["generate"] or rest == ["generate_stream"]:
        if method != b"POST":
            return gateway.method_not_allowed(conn, request, b"POST")
        # The generate extension: the JSON body goes to the predictor as its sample.
        mode = GENERATE if rest[0] == "generate" else GENERATE_STREAM
        gateway.dispatch(conn, queue, messages.PREDICT, request.body, mode)
        if conn.queue is queue:  # admitted: the answer is written as the extension says
            conn.stream = Stream(conn, mode, queue.api_name)  # a splitter's: the API it picked
        return None
    return conn.respond(404, codec.error_body(f"no V2 route {request.path.decode('utf-8', 'replace')}"))


def _repository_index(gateway: Gateway, conn: HttpConnection, request: Request) -> None:
    models = [(gateway.model_name(queue), queue.serving) for queue in gateway.visible(request.headers)]
    try:
        return conn.respond(200, v2_models.repository_index(request.body, models, VERSION))
    except InputError as exc:
        return conn.respond(400, codec.error_body(str(exc)))
