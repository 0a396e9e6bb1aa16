"""Open Inference Protocol (KServe V2) datatypes: their numpy dtypes both ways, and a tensor's
``$metadata_tensor`` as model metadata describes it (``protocols/v2.py`` decodes and encodes
tensors with them; ``protocols/v2_models.py`` describes models).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.errors import InputError
from inferd.handler.convert import MAP_TYPE

NUMPY_OF: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}


def _bf16() -> np.dtype[Any] | None:
    try:
        import ml_dtypes

        found: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return found
    except ImportError:
        return None


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    if datatype == "BF16":
        found = _bf16()
        if found is None:
            raise InputError("BF16 needs the ml_dtypes package")
        return found
    try:
        return NUMPY_OF[datatype]
    except KeyError:
        raise InputError(
            f"unknown datatype {datatype!r} (expected one of {', '.join(NUMPY_OF)}, BF16)"
        ) from None


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype (strings and other objects are BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    if dtype.name == "bfloat16":
        return "BF16"
    for name, candidate in NUMPY_OF.items():
        if candidate == dtype:
            return name
    return "BYTES"


def tensor_metadata(spec: dict[str, Any]) -> dict[str, Any]:
    """``$metadata_tensor`` from a ``TensorSpec.describe()`` dict."""
    dtype = np.dtype(spec["dtype"]) if spec["dtype"] != "bfloat16" else _bf16() or np.dtype(object)
    shape = spec["shape"]
    if spec.get("type", "").startswith(MAP_TYPE):  # an ONNX map input: one JSON object
        return {"name": spec["name"], "datatype": "BYTES", "shape": [1]}
    if spec.get("type", "").startswith("seq("):
        return {"name": spec["name"], "datatype": "BYTES", "shape": [-1]}
    return {"name": spec["name"], "datatype": datatype_of(dtype), "shape": [-1] if shape is None else shape}
