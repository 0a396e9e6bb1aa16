"""NumPy's removed aliases, put back for projects read from ``cortex.yaml``.

Cortex v0.10 ran NumPy 1.17, where ``np.asscalar`` and the builtin-type aliases ``np.float``,
``np.int``, ``np.bool``, ``np.object`` (and ``np.str``, ``np.complex``) still existed; its
examples use them (``np.asscalar`` in the mpg estimator). NumPy 1.23/1.24 removed them. A
replica serving a ``cortex.yaml`` project adds them back before importing user code, with
their old meanings; projects in ``inferd.yaml`` get NumPy exactly as it is.
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


def asscalar(array: Any) -> Any:
    """``np.asscalar(a)``: the one element of a size-1 array as a Python number (``a.item()``)."""
    return np.asarray(array).item()


def install() -> list[str]:
    """Add the removed names that this NumPy lacks; the names added (none are replaced)."""
    added = []
    for name, value in {"asscalar": asscalar, **BUILTIN_ALIASES}.items():
        if name not in vars(np):
            setattr(np, name, value)
            added.append(name)
    return added
