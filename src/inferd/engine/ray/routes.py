"""The V2 and TensorFlow Serving routes on Ray: the same answers as the gateway's, without Ray.

The gateway answers these paths from its queues (gateway/v2.py, gateway/tfserving.py); on Ray a
router application answers them from a ``Catalog`` of the deployed APIs and forwards tensor
requests to the API's replicas. Kept free of Ray so the path rules are unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from inferd import __version__, codec
from inferd.errors import InputError
from inferd.protocols import tfserving as codec_tf
from inferd.protocols import v2_models
from inferd.replica import messages

VERSION = "1"
EXTENSIONS = ["binary_tensor_data", "model_repository(list)", "model_configuration", "classification"]
TF_VERBS = {"predict": messages.TF_PREDICT, "classify": messages.TF_CLASSIFY, "regress": messages.TF_REGRESS}


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, JSON body and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Catalog(Protocol):
    """The deployed APIs as the router sees them (Ray Serve inside the router replica)."""

    async def names(self) -> list[str]:
        """Names of the inferd APIs deployed on the cluster."""
        ...

    async def info(self, name: str) -> dict[str, Any] | None:
        """The API's signature (``Predictor.describe``); ``None`` for an unknown API, ``{}``
        while it has no replica to ask."""
        ...

    async def error(self, name: str) -> str | None:
        """Why the API cannot serve (its replicas failed to start); None while it can, or may."""
        ...

    async def forward(self, name: str, kind: bytes, body: bytes) -> tuple[int, bytes, int]:
        """Run one request frame on a replica of ``name``: status, body, and the V2 binary
        header length (0 for a JSON answer)."""
        ...


def _error(status: int, message: str) -> Answer:
    return Answer(status, codec.error_body(message))


def _not_allowed(method: str, allowed: str) -> Answer:
    return Answer(405, codec.error_body(f"method {method} is not allowed here"), {"Allow": allowed})


async def v2_route(
    catalog: Catalog, method: str, path: str, header_length: str | None, body: bytes
) -> Answer:
    """``/v2...``: server and model metadata, readiness, and ``infer`` forwarded to the API."""
    parts = path.rstrip("/").split("/")[2:]  # after "/v2"
    if not parts:
        if method != "GET":
            return _not_allowed(method, "GET")
        return Answer(200, orjson.dumps({"name": "inferd", "version": __version__, "extensions": EXTENSIONS}))
    if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
        if parts[1] == "live":
            return Answer(200, b'{"live":true}')
        names = await catalog.names()
        ready = bool(names) and all([bool(await catalog.info(name)) for name in names])
        return Answer(200 if ready else 503, orjson.dumps({"ready": ready}))
    if parts == ["repository", "index"]:
        if method != "POST":
            return _not_allowed(method, "POST")
        models = [(name, bool(await catalog.info(name))) for name in await catalog.names()]
        try:
            return Answer(200, v2_models.repository_index(body, models, VERSION))
        except InputError as exc:
            return _error(400, str(exc))
    if parts[0] != "models":
        return _error(404, f"no V2 route {path}")
    if len(parts) == 1:
        return Answer(200, orjson.dumps({"models": sorted(await catalog.names())}))
    name, rest = parts[1], parts[2:]
    info = await catalog.info(name)
    if info is None:
        return _error(404, f"model '{name}' is not found")
    if len(rest) >= 2 and rest[0] == "versions":
        if rest[1] != VERSION:
            return _error(404, f"model '{name}' has no version '{rest[1]}' (it has: 1)")
        rest = rest[2:]
    if not rest:
        if not info:
            return _error(503, f"model '{name}' is not ready yet")
        return Answer(200, orjson.dumps(v2_models.model_metadata(name, VERSION, info)))
    if rest == ["config"]:
        if not info:
            return _error(503, f"model '{name}' is not ready yet")
        return Answer(200, orjson.dumps(v2_models.model_config(name, info)))
    if rest == ["ready"]:
        return Answer(200 if info else 503, orjson.dumps({"name": name, "ready": bool(info)}))
    if rest == ["infer"]:
        if method != "POST":
            return _not_allowed(method, "POST")
        if refused := _json_only(name, info):
            return refused
        if header_length is None:
            return await _forward(catalog, name, messages.V2_INFER, body)
        if not header_length.isdigit():
            return _error(400, "Inference-Header-Content-Length must be a number")
        framed = messages.LENGTH.pack(int(header_length)) + body
        return await _forward(catalog, name, messages.V2_INFER_BINARY, framed)
    return _error(404, f"no V2 route {path}")


async def tfserving_route(catalog: Catalog, method: str, path: str, body: bytes) -> Answer:
    """``/v1/models...``: model status and metadata, ``:predict|classify|regress`` forwarded."""
    path = path.rstrip("/")
    rest = path[len("/v1/models") :].lstrip("/") if path.startswith("/v1/models") else None
    if rest is None:
        return _error(404, f"no TensorFlow Serving route {path}")
    if not rest:
        return Answer(200, orjson.dumps({"models": sorted(await catalog.names())}))
    rest, _, verb = rest.partition(":")
    parts = rest.split("/")
    name = parts[0]
    info = await catalog.info(name)
    if info is None:
        return _error(404, f"Servable not found for request: Latest({name})")
    parts = parts[1:]
    if len(parts) >= 2 and parts[0] in ("versions", "labels"):
        if parts[0] == "labels":  # none is configured: TF Serving refuses a label it does not know
            return _error(400, f"Unrecognized servable version label: {parts[1]}")
        if parts[1] != VERSION:
            return _error(404, f"Servable not found for request: Specific({name}, {parts[1]})")
        parts = parts[2:]
    if verb:
        kind = TF_VERBS.get(verb)
        if verb == codec_tf.EXPLAIN and not parts:
            return _error(501, codec_tf.no_explainer(name))
        if kind is None or parts:
            return _error(404, f"no TensorFlow Serving route {path}")
        if method != "POST":
            return _not_allowed(method, "POST")
        if refused := _json_only(name, info):
            return refused
        return await _forward(catalog, name, kind, body)
    if parts == ["metadata"]:
        if not info:
            return _error(503, f"model '{name}' is not ready yet")
        metadata = {
            "model_spec": {"name": name, "signature_name": "", "version": VERSION},
            "metadata": {"signature_def": codec_tf.signature_def(info)},
        }
        return Answer(200, orjson.dumps(metadata))
    if parts:
        return _error(404, f"no TensorFlow Serving route {path}")
    ready = bool(info)
    error = None if ready else await catalog.error(name)
    state = "AVAILABLE" if ready else ("END" if error else "LOADING")
    status = (
        {"error_code": "UNAVAILABLE", "error_message": error}
        if error
        else {"error_code": "OK", "error_message": ""}
    )
    return Answer(
        200,
        orjson.dumps(
            {
                "name": name,
                "ready": ready,
                "model_version_status": [{"version": VERSION, "state": state, "status": status}],
            }
        ),
    )


def _json_only(name: str, info: dict[str, Any]) -> Answer | None:
    """A Python predictor's refusal of tensor requests, in the local gateway's words."""
    if info.get("model_format") != "predictor":
        return None
    where = f"POST {info['endpoint']}" if info.get("endpoint") else "its endpoint"
    message = f"api '{name}' is a Python predictor: it answers JSON at {where}, not V2 or TF Serving tensors"
    return _error(400, message)


async def _forward(catalog: Catalog, name: str, kind: bytes, body: bytes) -> Answer:
    status, out, binary_header = await catalog.forward(name, kind, body)
    if binary_header:  # V2 binary answer: the JSON header's length, then raw tensors
        headers = {"Inference-Header-Content-Length": str(binary_header)}
        return Answer(status, out, {**headers, "Content-Type": "application/octet-stream"})
    return Answer(status, out)
