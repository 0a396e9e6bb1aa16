"""What ``?debug=true`` logs of a request in its replica: each stage's value, cut short."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np

log = logging.getLogger("inferd.handler")

DEBUG_LIMIT = 500  # characters of a value shown


def preview(value: Any) -> str:
    """``value`` as a log shows it: an array's shape and first values, a long list's first ten."""
    if isinstance(value, np.ndarray):
        text = f"ndarray{list(value.shape)} {np.array2string(value.ravel()[:10], threshold=10)}"
    elif isinstance(value, list) and len(value) > 10:
        text = repr(value[:10])[:-1] + ", ...]"
    else:
        text = repr(value)
    return text if len(text) <= DEBUG_LIMIT else text[:DEBUG_LIMIT] + "..."


def logged(stage: str, result: Any) -> Any:
    """``result``, logged (``?debug=true``): a stream's items each as it passes (logging the
    generator would say ``<generator object ...>``), anything else at once."""
    if isinstance(result, Iterator):
        return _items_logged(stage, result)
    if isinstance(result, AsyncIterator):
        return _async_items_logged(stage, result)
    log.info("%s: %s", stage, preview(result))
    return result


def _items_logged(stage: str, items: Iterator[Any]) -> Iterator[Any]:
    try:
        for index, item in enumerate(items):
            log.info("%s item %d: %s", stage, index, preview(item))
            yield item
    finally:  # a client that left closes this: the user's generator is closed with it, now
        close = getattr(items, "close", None)
        if close is not None:
            close()


async def _async_items_logged(stage: str, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    index = 0
    try:
        async for item in items:
            log.info("%s item %d: %s", stage, index, preview(item))
            index += 1
            yield item
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()
