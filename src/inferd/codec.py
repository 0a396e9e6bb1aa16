"""JSON in and out of the data path: orjson, numpy-aware, with one readable error for bad input."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from inferd.errors import InputError

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # non-contiguous, object or exotic dtypes
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, set | frozenset):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """Encode a handler's result (numpy arrays and scalars included) as JSON bytes."""
    try:
        return orjson.dumps(value, default=_fallback, option=OPTIONS)
    except TypeError:
        # orjson's default never sees dict keys: numpy scalars as keys (``dict(zip(
        # model.classes_, probabilities))``) are made Python values, then encoded once more.
        plain = _plain_keys(value)
        if plain is value:
            raise
        return orjson.dumps(plain, default=_fallback, option=OPTIONS)


def _plain_keys(value: Any) -> Any:
    """``value`` with numpy scalar dict keys (at any depth) made Python values; same object if none."""
    if isinstance(value, dict):
        items = [
            (key.item() if isinstance(key, np.generic) else key, _plain_keys(v)) for key, v in value.items()
        ]
        if all(
            k is old_key and v is old for (k, v), (old_key, old) in zip(items, value.items(), strict=True)
        ):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        converted = [_plain_keys(item) for item in value]
        if all(new is old for new, old in zip(converted, value, strict=True)):
            return value
        return converted
    return value


def loads(body: bytes) -> Any:
    """Decode a request body; ``InputError`` (400) when it is not JSON."""
    if not body.strip():
        raise InputError("malformed JSON: the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc}") from None


# An error message quoting the input (numpy's "could not convert string to float: '...'") is cut:
# a 10 MiB body must not come back as a 10 MiB error.
MAX_ERROR_CHARS = 8192


def error_body(message: str, kind: str | None = None) -> bytes:
    """The JSON body of an error response: ``{"error": message}``."""
    if len(message) > MAX_ERROR_CHARS:
        message = f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"
    if kind is None:
        return orjson.dumps({"error": message})
    return orjson.dumps({"error": message, "type": kind})
