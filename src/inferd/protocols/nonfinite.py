"""NaN, Infinity and -Infinity in JSON tensors, as TF Serving and Triton read and write them.

JSON has no literal for a non-finite float: orjson refuses them in a request and writes ``null``
in an answer, which loses which one it was (tritonclient reads a ``null`` as NaN, so an
infinity came back as NaN). TF Serving and Triton (since server#3870) take and write the
non-RFC literals that Python's ``json``, rapidjson and tritonclient read (``codec.loads`` reads
them in requests).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import orjson

from inferd import codec

# Non-finite floats are marked while encoding (a random token no client can send), then the
# marks replaced by the literals.
MARK = f"\x00inferd-{secrets.token_hex(8)}:"
LITERALS = {orjson.dumps(MARK + literal): literal.encode() for literal in ("NaN", "Infinity", "-Infinity")}
MARKED = orjson.dumps(MARK)[:-1]


def listed(value: np.ndarray[Any, Any]) -> Any:
    """``value.tolist()``, its non-finite floats marked for ``unmark``."""
    if value.dtype.name == "bfloat16":  # ml_dtypes' (TensorFlow's): numpy's kind "V", not "f"
        value = value.astype(np.float32)
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        marked = value.astype(object)
        marked[np.isnan(value)] = MARK + "NaN"
        marked[np.isposinf(value)] = MARK + "Infinity"
        marked[np.isneginf(value)] = MARK + "-Infinity"
        return marked.tolist()
    return value.tolist()


def unmark(encoded: bytes) -> bytes:
    """``encoded`` with the marks of ``listed`` replaced by NaN, Infinity and -Infinity."""
    if MARKED in encoded:
        for mark, literal in LITERALS.items():
            encoded = encoded.replace(mark, literal)
    return encoded


def dumps(value: Any) -> bytes:
    """``value`` as JSON, its NaN and infinities written as the protocols write them."""
    return unmark(codec.dumps(value))
