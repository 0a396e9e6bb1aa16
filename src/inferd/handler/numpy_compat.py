"""NumPy's removed aliases, put back for projects read from ``cortex.yaml``.

Cortex v0.10 ran NumPy 1.17, where ``np.asscalar`` and the builtin-type aliases ``np.float``,
``np.int``, ``np.bool``, ``np.object`` (and ``np.str``, ``np.complex``) still existed; its
examples use them (``np.asscalar`` in the mpg estimator). NumPy 1.23/1.24 removed them, and
NumPy 2.0 removed more that 2019 code wrote (``np.NaN``, ``np.Inf``, ``np.float_``,
``np.product``, ``np.asfarray``, ...). A replica serving a ``cortex.yaml`` project adds them
back before importing user code, with their old meanings; projects in ``inferd.yaml`` get
NumPy exactly as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The aliases NumPy 1.20 deprecated and 1.24 removed: each meant the Python builtin.
BUILTIN_ALIASES: dict[str, type] = {
    "float": float,
    "int": int,
    "bool": bool,
    "object": object,
    "str": str,
    "complex": complex,
}


# What NumPy 2.0 removed (NEP 52) that 2019 code wrote, each with its NumPy 1.17 meaning.
NUMPY2_REMOVED: dict[str, Any] = {
    "NaN": np.nan,
    "NAN": np.nan,
    "Inf": np.inf,
    "Infinity": np.inf,
    "infty": np.inf,
    "PINF": np.inf,
    "NINF": -np.inf,
    "PZERO": 0.0,
    "NZERO": -0.0,
    "float_": np.float64,
    "complex_": np.complex128,
    "cfloat": np.complex128,
    "singlecomplex": np.complex64,
    "longfloat": np.longdouble,
    "clongfloat": np.clongdouble,
    "longcomplex": np.clongdouble,
    "string_": np.bytes_,
    "unicode_": np.str_,
    "bool8": np.bool_,
    "int0": np.intp,
    "uint0": np.uintp,
    "object0": np.object_,
    "str0": np.str_,
    "bytes0": np.bytes_,
    "void0": np.void,
    "product": np.prod,
    "cumproduct": np.cumprod,
    "sometrue": np.any,
    "alltrue": np.all,
    "round_": np.round,
    "mat": np.asmatrix,
    "trapz": getattr(np, "trapezoid", None),  # NumPy 2's name (1.26 still has trapz itself)
    "issubclass_": issubclass,
}


def asscalar(array: Any) -> Any:
    """``np.asscalar(a)``: the one element of a size-1 array as a Python number (``a.item()``)."""
    return np.asarray(array).item()


def asfarray(a: Any, dtype: Any = np.float64) -> Any:
    """``np.asfarray``: ``a`` as an array of a floating type (float64 unless ``dtype`` is one)."""
    if not np.issubdtype(np.dtype(dtype), np.inexact):
        dtype = np.float64
    return np.asarray(a, dtype=dtype)


def msort(a: Any) -> Any:
    """``np.msort``: a copy of ``a`` sorted along its first axis."""
    return np.sort(a, axis=0)


def in1d(ar1: Any, ar2: Any, assume_unique: bool = False, invert: bool = False) -> Any:
    """``np.in1d``: whether each element of ``ar1`` (flattened) is in ``ar2``."""
    return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


FUNCTIONS = {"asscalar": asscalar, "asfarray": asfarray, "msort": msort, "in1d": in1d}


def install() -> list[str]:
    """Add the removed names that this NumPy lacks; the names added (none are replaced)."""
    added = []
    for name, value in {**FUNCTIONS, **BUILTIN_ALIASES, **NUMPY2_REMOVED}.items():
        if name not in vars(np) and value is not None:
            setattr(np, name, value)
            added.append(name)
    return added
