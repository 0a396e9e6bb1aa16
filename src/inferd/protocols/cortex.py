"""Cortex v0.10's HTTP conventions at an API's endpoint, answered alike by the local gateway
(gateway/cortex.py, gateway/app.py) and by an API's replica on Ray (engine/ray/replica.py).

``GET <endpoint>/signature``: Cortex v0.10.0 and v0.10.1 routed every path under an API's
endpoint to its container, so ``<api url>/signature`` reached the container's
``/predict/signature`` and answered ``{"signature": {input: {"shape": [...], "type": "float32"}}}``
(a dynamic dimension -1 for TensorFlow; for ONNX onnxruntime's ``NodeArg.shape``, null or the
dimension's name such as ``"batch"``; the NumPy dtype's name, TensorFlow's ``string`` for text).
Clients read input names there.

A ``POST`` with an empty body that does not say it is JSON is a ``null`` sample: Cortex read
bodies with Flask 1.1's ``request.get_json()``, which is None without a JSON ``Content-Type``.
A body in a ``Content-Encoding`` is refused (415): no route undoes one, and the coded bytes
would be read as malformed JSON.
"""

from __future__ import annotations

from typing import Any

SIGNATURE = "signature"  # the path below an API's endpoint
# A CORS preflight's answer (204) on any route (gateway/app.py says why these).
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "*, Authorization, X-API-Key, Content-Type, X-Request-ID, "
    "Inference-Header-Content-Length",
    "Access-Control-Max-Age": "600",
}


def signature(info: dict[str, Any]) -> dict[str, Any]:
    """Cortex's ``/signature`` answer for a replica's ``describe()`` (a model that has inputs)."""
    return {"signature": {spec["name"]: cortex_field(spec, info) for spec in info["inputs"]}}


def cortex_field(spec: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """One input as Cortex's ``/signature`` showed it: its shape and dtype's name."""
    kind = spec["dtype"]
    if kind == "object":  # text: NumPy's object in Cortex's ONNX answer, TensorFlow's string
        kind = "string" if info.get("model_format") == "tensorflow" else "object"
    shape = spec["shape"]
    if info.get("model_format") == "onnx":  # onnxruntime's NodeArg.shape: null, or the dimension's name
        names = spec.get("dim_names") or [None] * len(shape or ())
        shape = [names[i] or None if size == -1 else size for i, size in enumerate(shape or ())]
    return {"shape": shape, "type": kind}


def sample_body(body: bytes, content_type: bytes) -> bytes:
    """The body a ``POST`` to an API's endpoint is predicted on: ``null`` for an empty one that
    does not say it is JSON (``curl -X POST URL``, ``requests.post(url)`` ran Cortex's predictor
    on None); an empty body said to be JSON stays a 400, as it was."""
    if len(body) >= 64 or bytes(body).strip() or says_json(content_type):
        return body
    return b"null"


def says_json(content_type: bytes) -> bool:
    """Whether a Content-Type is JSON as Flask 1.1's ``is_json`` read it: ``application/json``
    or ``application/...+json``, parameters aside."""
    kind = content_type.partition(b";")[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def coding_refusal(content_encoding: bytes | None) -> str | None:
    """Why a body sent with this ``Content-Encoding`` is refused (415); None when it is plain.
    No route undoes a coding, so a compressed body would be read as malformed JSON."""
    if content_encoding is None:
        return None
    if all(c.strip().lower() in (b"", b"identity") for c in content_encoding.split(b",")):
        return None
    shown = content_encoding.decode("latin-1")[:64]
    return f"Content-Encoding {shown} is not supported: send the body uncompressed"
