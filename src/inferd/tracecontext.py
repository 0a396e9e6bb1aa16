"""The W3C trace context of the request a replica is answering, for request handlers.

The gateway sends a request's ``traceparent`` (the one it returns to the client) in a frame
just before the request (``messages.TRACE``); the replica keeps it here while it answers that
request, so a handler can log the trace id or start its own spans in the same trace::

    from inferd import tracecontext

    def post_inference(prediction, signature, metadata):
        print("trace", tracecontext.trace_id())
        ...

``None`` when the request carried no trace context (no ``traceparent`` came and tracing is not
configured), for batched requests, and on the Ray engine.
"""

from __future__ import annotations

_current: str | None = None


def traceparent() -> str | None:
    """The ``traceparent`` of the request being answered (``00-<trace id>-<span id>-<flags>``)."""
    return _current


def trace_id() -> str | None:
    """The 32 hex digits of the trace id of the request being answered."""
    return _current.split("-")[1] if _current else None


def set_current(value: str | None) -> None:
    """Called by the replica's loop around each request."""
    global _current
    _current = value
