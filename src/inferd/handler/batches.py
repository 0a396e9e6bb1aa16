"""Samples batched into one model call: which may be stacked, and the prediction cut back.

The replica's batching (``Predictor.predict_batch``) stacks samples whose inputs agree past
the batch dimension and runs the model once; a prediction whose outputs do not keep one row
per input sample cannot be cut back, and those samples run one at a time instead.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def stack_key(inputs: dict[str, np.ndarray[Any, Any]]) -> tuple[Any, ...] | None:
    """What samples must share to be stacked: every input's dtype and shape past the batch dimension.

    ``None`` when the sample has no common batch dimension (it runs alone).
    """
    rows = {value.shape[0] if value.ndim else None for value in inputs.values()}
    if len(rows) != 1 or None in rows:
        return None
    return tuple((name, value.dtype.str, value.shape[1:]) for name, value in sorted(inputs.items()))


def split_rows(prediction: Any, counts: list[int]) -> list[Any] | None:
    """Cut a batched prediction back into one per sample (``None`` when rows do not line up)."""
    total = sum(counts)
    bounds = np.cumsum([0, *counts])
    if isinstance(prediction, dict):
        if not all(_has_rows(value, total) for value in prediction.values()):
            return None
        return [
            {name: value[a:b] for name, value in prediction.items()} for a, b in itertools.pairwise(bounds)
        ]
    if isinstance(prediction, list):
        if not all(_has_rows(value, total) for value in prediction):
            return None
        return [[value[a:b] for value in prediction] for a, b in itertools.pairwise(bounds)]
    return None


def _has_rows(value: Any, total: int) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim > 0 and value.shape[0] == total
    return isinstance(value, list) and len(value) == total
