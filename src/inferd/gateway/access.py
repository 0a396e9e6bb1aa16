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
from typing import TYPE_CHECKING, Protocol

import orjson

from inferd.logfiles import RotatingLog, api_file_bytes

if TYPE_CHECKING:
    from inferd.gateway.http import HttpConnection

FLUSH_SECONDS = 0.2
MAX_ROUTES = 1000
ERROR_CHARS = 500  # of an error answer's message, in its access line
# One access line (JSON); the pieces in quotes are JSON-encoded before they are put in.
LINE = (
    b'{"time":%.3f,"id":%s,%s,"route":%s,"protocol":"%s","status":%d,"latency_ms":%.3f,'
    b'"replica":%s,"trace_id":%s}'
)


class TextSink(Protocol):
    """Where access lines go without a folder: ``sys.stderr``, or ``inferd serve``'s console."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


class AccessLog:
    """Buffers access records per API and appends them to ``<folder>/<deployment>/<api>.access.log``
    (rotated by size), or to a stream."""

    def __init__(self, folder: Path | None = None, stream: TextSink | None = None) -> None:
        self.folder = folder
        self.stream = stream if stream is not None or folder is not None else sys.stderr
        self._pending: dict[str, list[bytes]] = {}
        self._files: dict[str, RotatingLog] = {}
        self._task: asyncio.Task[None] | None = None
        self._names: dict[str, bytes] = {}
        self._routes: dict[bytes, bytes] = {}
        self._replicas: dict[str, bytes] = {}

    def record(self, api: str, conn: HttpConnection, status: int, latency: float, error: bytes = b"") -> None:
        """Buffer one request's line; ``api`` is the API's key (``deployment/api``); ``error``, the
        body of an error answer, adds its message (``"error"``) to the line.

        The line is formatted from pieces JSON-encoded once per API, route and replica: a dict
        through orjson and two ``round`` calls cost the gateway several times as much per request.
        """
        names = self._names.get(api)
        if names is None:
            deployment, _, name = api.rpartition("/")
            names = self._names[api] = orjson.dumps({"deployment": deployment, "api": name})[1:-1]
        route = self._routes.get(conn.path)
        if route is None:
            if len(self._routes) >= MAX_ROUTES:  # paths are chosen by clients: keep the cache bounded
                self._routes.clear()
            route = self._routes[conn.path] = orjson.dumps(conn.path.decode("utf-8", "replace"))
        replica = self._replicas.get(conn.replica_id)
        if replica is None:
            if len(self._replicas) >= MAX_ROUTES:  # replicas come and go over a long run
                self._replicas.clear()
            replica = self._replicas[conn.replica_id] = orjson.dumps(conn.replica_id or None)
        request_id = conn.request_id
        if b'"' in request_id or b"\\" in request_id:  # a client's X-Request-ID may hold either
            quoted_id = orjson.dumps(request_id.decode("ascii", "replace"))
        else:
            quoted_id = b'"%s"' % request_id
        extra = conn.extra_headers
        trace = b"null" if not extra else orjson.dumps(trace_id(extra))
        line = LINE % (
            time.time(),
            quoted_id,
            names,
            route,
            conn.protocol.encode(),
            status,
            latency * 1000,
            replica,
            trace,
        )
        if error:
            line = line[:-1] + b',"error":%s}' % orjson.dumps(error_message(error))
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
                        out = self._files[api] = RotatingLog(
                            self.folder / f"{api}.access.log", api_file_bytes()
                        )
                    out.write(text)
                elif self.stream is not None:
                    self.stream.write(text + "\n")
                    self.stream.flush()
            except OSError:
                pass  # a full disk must not stop serving; the lines are dropped

    def forget(self, api: str) -> None:
        """Write the API's last lines and close its file (it was deleted)."""
        self.flush()
        self._names.pop(api, None)
        out = self._files.pop(api, None)
        if out is not None:
            out.close()

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


def error_message(body: bytes) -> str:
    """The message of an error answer (``{"error": "..."}``), cut to ``ERROR_CHARS``; the body
    itself when it holds none (a handler's own error document, say)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    message = document.get("error") if isinstance(document, dict) else None
    if not isinstance(message, str):
        message = body.decode("utf-8", "replace")
    return message if len(message) <= ERROR_CHARS else message[:ERROR_CHARS] + "..."
