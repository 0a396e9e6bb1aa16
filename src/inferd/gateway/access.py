"""The access log: one JSON line per request in the API's access file, written in batches.

Lines are buffered in memory and flushed a few times a second, so logging costs a dict and an
orjson call per request, not a write system call; each flush is one record per API for the
rotating file (``logfiles.RotatingLog``), so rotation costs nothing per request either.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import orjson

from inferd.logfiles import RotatingLog

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection

FLUSH_SECONDS = 0.2


class AccessLog:
    """Buffers access records per API and appends them to ``<folder>/<deployment>/<api>.access.log``
    (rotated by size), or to a stream."""

    def __init__(self, folder: Path | None = None, stream: IO[str] | None = None) -> None:
        self.folder = folder
        self.stream = stream if stream is not None or folder is not None else sys.stderr
        self._pending: dict[str, list[bytes]] = {}
        self._files: dict[str, RotatingLog] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, api: str, conn: HttpConnection, status: int, latency: float) -> None:
        """Buffer one request's line; ``api`` is the API's key (``deployment/api``)."""
        deployment, _, name = api.rpartition("/")
        line = orjson.dumps(
            {
                "time": round(time.time(), 3),
                "id": conn.request_id.decode("ascii", "replace"),
                "deployment": deployment,
                "api": name,
                "route": conn.path.decode("utf-8", "replace"),
                "protocol": conn.protocol,
                "status": status,
                "latency_ms": round(latency * 1000, 3),
                "replica": conn.replica_id or None,
                "trace_id": trace_id(conn.extra_headers),
            }
        )
        self._pending.setdefault(api, []).append(line)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        self._task = None
        self.flush()

    def flush(self) -> None:
        """Write every buffered line now (also called at shutdown)."""
        pending, self._pending = self._pending, {}
        for api, lines in pending.items():
            text = b"\n".join(lines).decode("utf-8", "replace")
            try:
                if self.folder is not None:
                    out = self._files.get(api)
                    if out is None:
                        out = self._files[api] = RotatingLog(self.folder / f"{api}.access.log")
                    out.write(text)
                elif self.stream is not None:
                    self.stream.write(text + "\n")
                    self.stream.flush()
            except OSError:
                pass  # a full disk must not stop serving; the lines are dropped

    def close(self) -> None:
        """Flush, and close the files (at shutdown)."""
        self.flush()
        for out in self._files.values():
            out.close()
        self._files.clear()


def trace_id(headers: bytes) -> str | None:
    """The trace id of the ``traceparent`` answer header among ``headers`` (``None``: untraced)."""
    start = headers.find(b"traceparent: 00-")
    return headers[start + 16 : start + 48].decode() if start >= 0 else None
