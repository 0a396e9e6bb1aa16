"""Remote models for the local engine: fetched with retries, or the cached copy when unreachable.

A restarted operator whose model origin is down, or whose model was deleted there, still
serves the copy it downloaded before (with a warning in the API's log and status); a version
that could not reach its model's origin at all is retried with back-off, so the API recovers
when the origin does, without a redeploy.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from inferd.errors import ModelGoneError, UnreachableError
from inferd.storage import cached_copy, fetch

RETRY_FIRST = 5.0  # seconds before the first retry of an unreachable origin
RETRY_MAX = 300.0


def retry_delay(attempts: int) -> float:
    """Seconds to wait before retry number ``attempts + 1``."""
    return float(min(RETRY_MAX, RETRY_FIRST * 2.0 ** max(0, attempts)))


async def fetch_model(uri: str) -> tuple[Path, str, str | None]:
    """The model's local path, its digest, and a warning when the cached copy stands in."""
    try:
        path, digest = await asyncio.to_thread(fetch, uri)
    except (UnreachableError, ModelGoneError) as exc:
        # A deleted object (or bucket) too: a restarted operator fetches every model again, and
        # the API that served before the restart must come back, not fail for want of a copy.
        cached = cached_copy(uri)
        if cached is None:
            raise
        path, digest, fetched = cached
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fetched))
        reason = exc.message.partition("\n")[0].removeprefix(f"{uri}: ")
        state = "unreachable" if isinstance(exc, UnreachableError) else "gone"
        return path, digest, f"{uri} is {state} ({reason}); serving the copy downloaded {stamp}"
    return path, digest, None
