"""The value a ``tracker:`` monitors in an answer (Cortex's rules), computed in the replica.

It travels to the gateway in the reply's metadata (after the timings), for a plain answer and
for a streamed one alike: a streamed answer is the list of its items, as ``inferd test`` and the
payload log show it, so a stream of one item is tracked as that item.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from inferd.config.blocks import Tracker

log = logging.getLogger("inferd.replica")

# A tracked class label longer than this is not counted: labels are chart bars and Prometheus
# label values, and the reply's metadata that carries one has a 64 KiB field.
MAX_LABEL_CHARS = 256


def _single(value: Any) -> Any:
    # A raw prediction such as [[6.0]] (a list of one output of one row) tracks as 6.0.
    while isinstance(value, list | tuple | np.ndarray) and len(value) == 1:
        value = value[0]
    return value.item() if isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0 else value


def tracked_value(result: Any, tracker: Tracker | None) -> Any:
    """The value ``tracker`` monitors in ``result`` (Cortex's rules), or ``None``.

    Never fails a request: a value that cannot be tracked is skipped with a warning.
    """
    if tracker is None or not tracker.model_type:
        return None
    value = result
    if tracker.key is not None:
        if not isinstance(result, dict) or tracker.key not in result:
            log.warning("unable to record prediction metric: the response has no key %r", tracker.key)
            return None
        value = result[tracker.key]
    value = _single(value)
    kinds = (str, int) if tracker.model_type == "classification" else (int, float)
    if isinstance(value, str) and len(value) > MAX_LABEL_CHARS:
        log.warning("unable to record prediction metric: a class label over %d characters", MAX_LABEL_CHARS)
        return None
    if isinstance(value, kinds) and not isinstance(value, bool):
        return value
    log.warning("unable to record prediction metric: %r is not a %s value", value, tracker.model_type)
    return None


def tracked_stream(first: Any, count: int, tracker: Tracker | None) -> Any:
    """The tracked value of a streamed answer that ended well: its only item, else ``None``.

    Only the first item is kept (a stream may be endless), so a longer stream is skipped with
    a warning that says why, as a plain answer that is a list of several values is.
    """
    if tracker is None or not tracker.model_type:
        return None
    if count != 1:
        log.warning(
            "unable to record prediction metric: a streamed answer of %d items "
            "(a tracker counts a stream of one item, as that item)",
            count,
        )
        return None
    return tracked_value(first, tracker)
