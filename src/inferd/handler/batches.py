"""Samples batched into one model call: which may be stacked, and the prediction cut back.

The replica's batching (``Predictor.predict_batch``) stacks samples whose inputs agree past
the batch dimension and runs the model once; a prediction whose outputs do not keep one row
per input sample cannot be cut back, and those samples run one at a time instead (``RowCheck``
also compares a sample's rows of the first batches with its answer alone).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from inferd.errors import InputError, ModelError
from inferd.handler.numbers import ml_float

log = logging.getLogger("inferd.handler")

# Stacked runs whose last sample is also run alone, to see that its rows of the batch are its own.
PROBES = 3
Inputs = dict[str, np.ndarray[Any, Any]]


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
            {name: _rows(value, a, b) for name, value in prediction.items()}
            for a, b in itertools.pairwise(bounds)
        ]
    if isinstance(prediction, list):
        if not all(_has_rows(value, total) for value in prediction):
            return None
        return [[_rows(value, a, b) for value in prediction] for a, b in itertools.pairwise(bounds)]
    return None


def _rows(value: Any, start: int, stop: int) -> Any:
    # An ONNX optional output that holds nothing (None) holds nothing for each sample.
    return None if value is None else value[start:stop]


class RowCheck:
    """Whether a model's samples may be stacked, learnt from its first batches.

    The first stacked runs also run their last sample alone: an output whose first dimension is
    free but not the batch (NonZero's indices, a sum over the batch, a transpose) may have as
    many rows as the batch by chance, and would hand each sample another's data. A model caught
    once runs one sample at a time from then on. A batch whose first and last samples are alike
    (a warm-up sending one payload) does not count as a check: statistics over the batch would
    agree by chance.
    """

    def __init__(self, stacks: bool) -> None:
        self.stacks = stacks  # from the signature (``convert.stacks_by_rows``), until caught
        self.probes = PROBES  # stacked runs still to check against a sample run alone

    def cut(
        self, batched: Any, counts: list[int], first: Inputs, last: Inputs, run: Callable[[Inputs], Any]
    ) -> list[Any] | None:
        """The batched prediction cut back per sample, or ``None`` (then each runs alone)."""
        parts = split_rows(batched, counts)
        reason = "the model's outputs do not keep one row per input row"
        if parts is not None and self.probes > 0:
            try:
                alone = run(last)
            except (ModelError, InputError):
                return None
            if same_prediction(alone, parts[-1]):
                if any(not np.array_equal(first[name], last[name]) for name in last):
                    self.probes -= 1
                return parts
            parts, reason = None, "a sample's rows of a batch were not what it got alone"
        if parts is None:
            self.stacks = False
            log.warning("%s: batched requests run one sample at a time from now on", reason)
        return parts


def _has_rows(value: Any, total: int) -> bool:
    if value is None:  # an empty optional output: nothing to cut
        return True
    if isinstance(value, np.ndarray):
        return value.ndim > 0 and value.shape[0] == total
    return isinstance(value, list) and len(value) == total


def same_prediction(alone: Any, part: Any) -> bool:
    """Whether a sample run alone got what its rows of a batched run got (floats but for noise).

    A model whose output has a free first dimension that is not the batch (the indices of
    ``NonZero``, a sum over the batch, a transpose) may give as many rows as the batch had by
    chance: only running a sample alone shows that its rows are not its own.
    """
    try:
        return _same(alone, part)
    except (TypeError, ValueError):  # values that do not compare (ragged, or odd types): not the same
        return False


def _same(alone: Any, part: Any) -> bool:
    if isinstance(alone, dict) and isinstance(part, dict):
        return alone.keys() == part.keys() and all(_same(alone[k], part[k]) for k in alone)
    if isinstance(alone, list | tuple) and isinstance(part, list | tuple):
        return len(alone) == len(part) and all(map(_same, alone, part))
    if isinstance(alone, np.ndarray | np.generic) or isinstance(part, np.ndarray | np.generic):
        a, b = np.asarray(alone), np.asarray(part)
        if a.shape != b.shape:
            return False
        if _floats(a.dtype) and _floats(b.dtype):
            return _close(a, b)
        return bool(np.array_equal(a, b))
    if isinstance(alone, float) and isinstance(part, float):
        return _close(np.asarray(alone), np.asarray(part))
    return bool(alone == part)


def _floats(dtype: np.dtype[Any]) -> bool:
    """numpy's floats and complex numbers, and ml_dtypes' floats (TensorFlow's bfloat16)."""
    return dtype.kind in "fc" or ml_float(dtype)


def _eps(dtype: np.dtype[Any]) -> float:
    if ml_float(dtype):  # numpy does not describe ml_dtypes' floats; ml_dtypes does
        import ml_dtypes

        return float(ml_dtypes.finfo(dtype).eps)  # type: ignore[no-untyped-call]
    return float(np.finfo(dtype).eps)


def _close(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Equal but for float noise: a batched kernel sums in another order than a lone one (and a
    GPU's, or float16's and bfloat16's, more so), so each value may be off by 0.1% of the
    output's largest (more for float16 and bfloat16); another sample's values are off by far more."""
    eps = max(_eps(a.dtype), _eps(b.dtype))
    if ml_float(a.dtype) or ml_float(b.dtype):  # bfloat16: compared as the float32 values they are
        a, b = a.astype(np.float32), b.astype(np.float32)
    finite = np.concatenate([np.abs(a[np.isfinite(a)]).ravel(), np.abs(b[np.isfinite(b)]).ravel()])
    scale = float(finite.max()) if finite.size else 0.0
    return bool(np.allclose(a, b, rtol=0, atol=max(1e-3, 16 * eps) * scale + 1e-6, equal_nan=True))
