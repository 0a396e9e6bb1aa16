"""TensorFlow Serving's ``:classify`` and ``:regress`` answers: which output holds the scores or
the values, one row per example (their requests are read by ``tfserving.decode_examples``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.errors import InputError
from inferd.protocols import nonfinite

REGRESSION_NAMES = ("outputs", "output", "value", "values", "predictions", "regression")
SCORE_NAMES = ("scores", "probabilities", "output_probability", "probability")


def _pick(outputs: dict[str, Any], names: tuple[str, ...], test: Any) -> str | None:
    for name in names:
        if name in outputs and test(outputs[name]):
            return name
    candidates = [name for name, value in outputs.items() if test(value)]
    return candidates[0] if len(candidates) == 1 else None


def _is_scores(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 2 and value.dtype.kind == "f" and value.shape[1] >= 2
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value)


def _is_values(value: Any) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype.kind == "f"
        and (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1))
    )


def _per_example(test: Any, examples: int) -> Any:
    """``test``, and one row per example: a [3] output of a model that sums its batch is no
    regression of one example (it answered three results)."""
    return lambda value: test(value) and len(value) == examples


def encode_classify(outputs: dict[str, Any], examples: int) -> bytes:
    """``{"results": [[[label, score], ...], ...]}`` from a scores output (and class labels),
    one row per example."""
    name = _pick(outputs, SCORE_NAMES, _per_example(_is_scores, examples))
    if name is None:
        raise InputError(
            "this model has no output to classify with (a float [batch, classes] output, one row "
            f"per example: {examples} here)"
        )
    scores = outputs[name]
    if isinstance(scores, list):  # a ZipMap: {label: score} per example
        return nonfinite.dumps(
            {"results": [[[str(label), float(score)] for label, score in row.items()] for row in scores]}
        )
    labels = outputs.get("classes")
    results = []
    for i, row in enumerate(scores.tolist()):
        if isinstance(labels, np.ndarray) and labels.ndim == 2 and labels.shape[1] == len(row):
            names = [_text(label) for label in labels[i].tolist()]
        else:
            names = [str(k) for k in range(len(row))]
        results.append([[label, score] for label, score in zip(names, row, strict=True)])
    return nonfinite.dumps({"results": results})


def encode_regress(outputs: dict[str, Any], examples: int) -> bytes:
    """``{"results": [value, ...]}`` from a float [batch] or [batch, 1] output, one value per
    example."""
    name = _pick(outputs, REGRESSION_NAMES, _per_example(_is_values, examples))
    if name is None:
        raise InputError(
            "this model has no output to regress with (a float [batch] or [batch, 1] output, one "
            f"value per example: {examples} here)"
        )
    return nonfinite.dumps({"results": outputs[name].reshape(-1).tolist()})


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
