"""Prediction monitoring in the replica: the value a ``tracker`` counts in each answer.

It travels to the gateway in the reply's metadata (after the timings), for a plain answer and
for a streamed one alike: a streamed answer is the list of its items, as ``inferd test`` and the
payload log show it, so a stream of one item is tracked as that item.

Cortex's rules (``extract_prediction``): with ``tracker.key`` the answer must be a dict holding
the key; a classification value is a string or an integer, a regression value a number; a value
that cannot be tracked never fails the request, it is skipped with a warning. The warning is
limited: an API whose every answer misses its tracker (a dict without a key, a list) logged its
whole answer once per request, which buried the rest of its log and, at 1 MiB answers, cost a
megabyte a request. Each reason is logged at once, then at most once a ``WARN_EVERY`` seconds
with the count of those left out, the value cut to ``SHOWN_CHARS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from inferd.config.blocks import Tracker

log = logging.getLogger("inferd.replica")

# A tracked class label longer than this is not counted: labels are chart bars and Prometheus
# label values, and the reply's metadata that carries one has a 64 KiB field.
MAX_LABEL_CHARS = 256
WARN_EVERY = 60.0
SHOWN_CHARS = 200


class LimitedWarnings:
    """Warnings of one kind at most once every ``every`` seconds, with how many were left out."""

    def __init__(self, every: float = WARN_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._next: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warn(self, kind: str, message: Callable[[], str]) -> None:
        """Log ``message()`` (built only when logged) unless ``kind`` was logged lately."""
        now = self.clock()
        if now < self._next.get(kind, now):
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._next[kind] = now + self.every
        left_out = self._left_out.pop(kind, 0)
        more = f" ({left_out} more since the last such warning)" if left_out else ""
        log.warning("unable to record prediction metric: %s%s", message(), more)


WARNINGS = LimitedWarnings()


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # the user's __repr__: a warning about it never fails the request
        return f"a {type(value).__name__} (its repr failed: {type(exc).__name__}: {exc})"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + f"... ({len(text)} characters)"


def _single(value: Any) -> Any:
    # A raw prediction such as [[6.0]] (a list of one output of one row) tracks as 6.0.
    while isinstance(value, list | tuple | np.ndarray) and len(value) == 1:
        value = value[0]
    return value.item() if isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0 else value


def tracked_value(result: Any, tracker: Tracker | None, warnings: LimitedWarnings = WARNINGS) -> Any:
    """The value ``tracker`` monitors in ``result`` (Cortex's rules), or ``None``.

    Never fails a request: a value that cannot be tracked is skipped with a (limited) warning.
    """
    if tracker is None:
        return None
    value = result
    if tracker.key is not None:
        key = tracker.key
        if not isinstance(result, dict):
            kind = type(result).__name__
            warnings.warn(
                "key",
                lambda: (
                    f"the response is a {kind}, not an object: tracker.key {key!r} names a key of an "
                    "object answer"
                ),
            )
            return None
        if key not in result:
            warnings.warn("key", lambda: f"the response has no key {key!r}")
            return None
        value = result[tracker.key]
    value = _single(value)
    kinds = (str, int) if tracker.model_type == "classification" else (int, float)
    if isinstance(value, str) and len(value) > MAX_LABEL_CHARS:
        warnings.warn("label", lambda: f"a class label over {MAX_LABEL_CHARS} characters")
        return None
    if isinstance(value, kinds) and not isinstance(value, bool):
        return value
    model_type = tracker.model_type
    warnings.warn("type", lambda: f"{_shown(value)} is not a {model_type} value")
    return None


def tracked_stream(
    first: Any, count: int, tracker: Tracker | None, warnings: LimitedWarnings = WARNINGS
) -> Any:
    """The tracked value of a streamed answer that ended well: its only item, else ``None``.

    Only the first item is kept (a stream may be endless), so a longer stream is skipped with
    a (limited) warning that says why, as a plain answer that is a list of several values is.
    """
    if tracker is None:
        return None
    if count != 1:
        warnings.warn(
            "stream",
            lambda: (
                f"a streamed answer of {count} items (a tracker counts a stream of one item, as that item)"
            ),
        )
        return None
    return tracked_value(first, tracker, warnings)
