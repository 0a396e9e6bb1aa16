"""TensorFlow outputs as Cortex v0.10 handed them to ``post_inference``: each a flat list."""

from __future__ import annotations

from typing import Any

import numpy as np


def flat_output(value: Any) -> Any:
    """One TensorFlow output as Cortex handed it to post_inference."""
    # Cortex delivered each TensorFlow output as a flat list (via protobuf JSON); handlers such
    # as `labels[int(prediction["class_ids"][0])]` rely on that. Native numbers, not strings.
    # A scalar output (TensorFlow gives a 0-d tensor as a NumPy scalar) is a list of one, as
    # protobuf JSON had it (`labels[prediction["labels"][0]]` in the BERT example).
    if isinstance(value, np.generic):
        value = np.asarray(value)
    elif isinstance(value, bytes | str):  # a scalar string output (TensorFlow gives it as bytes)
        return [_text(value)]
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        if flat.dtype.kind in "OS":
            return [_text(item) for item in flat.tolist()]
        return flat.tolist()
    return value


def _text(item: Any) -> Any:
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            return item
    return item
