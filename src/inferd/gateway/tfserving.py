"""TensorFlow Serving REST routes (and KServe V1's list): ``/v1/models/{name}...``.

Status and metadata come from the replicas' reports; ``:predict``, ``:classify`` and
``:regress`` bodies go to a replica untouched. Errors are ``{"error": ...}`` with TF Serving's
status mapping (400 bad input, 404 unknown model, 503 not ready, 500 model failure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from inferd import codec
from inferd.gateway import auth
from inferd.protocols import tfserving as codec_tf
from inferd.replica import messages

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway
    from inferd.gateway.http import HttpConnection
    from inferd.gateway.wire import Request

VERSION = "1"
VERBS = {"predict": messages.TF_PREDICT, "classify": messages.TF_CLASSIFY, "regress": messages.TF_REGRESS}


def _not_found(gateway: Gateway, name: str) -> str:
    if name in gateway.clashes or name in gateway.splitters.clashes:
        return gateway.unknown_model(name)
    return f"Servable not found for request: Latest({name})"


def route(gateway: Gateway, conn: HttpConnection, request: Request) -> None:
    path = request.path.decode("utf-8", "replace").rstrip("/")
    rest = path[len("/v1/models") :].lstrip("/")
    reading = request.method in (b"GET", b"HEAD")
    if not rest:
        if not reading:
            return gateway.method_not_allowed(conn, request, b"GET, HEAD")
        shown = sorted(gateway.model_name(queue) for queue in gateway.visible(request.headers))
        return conn.respond(200, orjson.dumps({"models": shown}))
    rest, _, verb = rest.partition(":")
    parts = rest.split("/")
    name = parts[0]
    queue = gateway.model(conn, name, request.method == b"POST")  # a GET is not a splitter's request
    if queue is None:
        return conn.respond(*gateway.not_found(_not_found(gateway, name)))
    if not auth.authorized(gateway, conn, request.headers, queue, "tfserving"):
        return None
    given = request.headers.get(b"traceparent")
    if given is not None or gateway.tracer is not None:  # W3C Trace Context, as on an endpoint
        gateway.trace(conn, given)
    parts = parts[1:]
    if len(parts) >= 2 and parts[0] in ("versions", "labels"):
        if parts[0] == "labels":  # none is configured: TF Serving refuses a label it does not know
            return conn.respond(400, codec.error_body(f"Unrecognized servable version label: {parts[1]}"))
        if parts[1] != VERSION:
            return conn.respond(
                404, codec.error_body(f"Servable not found for request: Specific({name}, {parts[1]})")
            )
        parts = parts[2:]
    if verb:
        kind = VERBS.get(verb)
        if verb == codec_tf.EXPLAIN and not parts:
            return conn.respond(501, codec.error_body(codec_tf.no_explainer(name)))
        if kind is None or parts:
            return conn.respond(404, codec.error_body(f"no TensorFlow Serving route {path}"))
        if request.method != b"POST":
            return gateway.method_not_allowed(conn, request, b"POST")
        return gateway.dispatch(conn, queue, kind, request.body, "tfserving")
    if parts in ([], ["metadata"]) and not reading:
        return gateway.method_not_allowed(conn, request, b"GET, HEAD")
    if parts == ["metadata"]:
        if not queue.info:
            return conn.respond(503, codec.error_body(f"model '{name}' is not ready yet"))
        body: dict[str, Any] = {
            "model_spec": {"name": name, "signature_name": "", "version": VERSION},
            "metadata": {"signature_def": codec_tf.signature_def(queue.info)},
        }
        return conn.respond(200, orjson.dumps(body))
    if parts:
        return conn.respond(404, codec.error_body(f"no TensorFlow Serving route {path}"))
    ready = queue.serving
    state = "AVAILABLE" if ready else ("END" if queue.error else "LOADING")
    status = (
        {"error_code": "OK", "error_message": ""}
        if not queue.error or ready
        else {"error_code": "UNAVAILABLE", "error_message": queue.error}
    )
    # TF Serving's model status, and KServe V1's {"name", "ready"} in the same answer.
    return conn.respond(
        200,
        orjson.dumps(
            {
                "name": name,
                "ready": ready,
                "model_version_status": [{"version": VERSION, "state": state, "status": status}],
            }
        ),
    )
