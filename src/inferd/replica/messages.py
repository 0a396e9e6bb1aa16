"""What crosses the gateway <-> replica boundary: length-prefixed frames over a socketpair.

Every frame is a 4-byte big-endian length, then one byte of kind, then the payload:

- engine -> replica: ``SPEC`` + the ``ReplicaSpec`` as JSON, once, the first frame (a spec of
  any size: an environment variable would hit the kernel's E2BIG limit).
- gateway -> replica: ``PREDICT`` / ``PREDICT_DEBUG`` + the raw request body (bytes moved once,
  never parsed by the gateway); the tensor protocols' kinds + their raw body (V2 binary: the
  JSON header's length first). A TensorFlow Serving path's ``signature_name`` is in the body.
- replica -> gateway: ``READY`` + JSON info (signature), once after loading; ``FAILED`` + JSON
  ``{"error", "detail"}`` when loading failed (then the replica exits); ``REPLY`` + a 2-byte
  HTTP status + a 2-byte length + that many bytes of JSON metadata (stage timings in seconds,
  the tracked prediction) + the JSON response body.
- streaming (a predictor or ``post_inference`` that returns an iterator): ``CHUNK`` + one item's
  JSON per item, sent as soon as it exists (an empty ``CHUNK`` opens a stream with no item
  yet), then ``END``, laid out as ``REPLY``: status 200 and an empty body, or the error's status
  and JSON body when the iterator raised. An iterator that fails before its first item is
  answered with a plain ``REPLY``. gateway -> replica: ``STOP`` (the client left, or the
  stream's time is up): the replica closes the iterator after the item it is producing.
  Backpressure is the socket itself: a gateway that stops reading blocks the replica's send.
- tracing: ``TRACE`` + a W3C ``traceparent`` value, just before the request it belongs to (only
  for requests that carry a trace context; never before a ``BATCH``).
- spinning: ``SPIN`` + a 4-byte limit in microseconds, just before a request the gateway runs
  (about) alone: after answering it the replica reads its socket without blocking for a while
  before it sleeps (replica/spinning.py).

Errors travel as status + JSON text, never as pickled exceptions.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from inferd.config.schema import Api

LENGTH = struct.Struct(">I")
REPLY_HEAD = struct.Struct(">IcHH")  # length, kind, status, metadata length

PREDICT = b"P"
PREDICT_DEBUG = b"D"
V2_INFER = b"V"  # the body is V2 JSON
V2_INFER_BINARY = b"B"  # 4-byte JSON header length, then the body (binary tensor extension)
TF_PREDICT = b"T"
TF_CLASSIFY = b"C"
TF_REGRESS = b"G"
TENSOR_KINDS = (V2_INFER, V2_INFER_BINARY, TF_PREDICT, TF_CLASSIFY, TF_REGRESS)
BATCH = b"N"  # count, then (length, body) per request: one model call for all of them
SPEC = b"S"
READY = b"R"
FAILED = b"F"
REPLY = b"A"
CHUNK = b"K"  # one item of a stream
END = b"E"  # the end of a stream: laid out as REPLY
STOP = b"Q"  # gateway -> replica: close the stream now
TRACE = b"t"  # gateway -> replica: the ``traceparent`` of the request frame that follows
SPIN = b"s"  # gateway -> replica: spin on the socket after answering the request that follows
BATCH_REPLY = b"M"  # count, then (status, metadata length, body length, metadata, body) each


def frame(kind: bytes, payload: bytes) -> bytes:
    """One frame: length prefix, kind byte, payload."""
    return LENGTH.pack(len(payload) + 1) + kind + payload


ITEM_HEAD = struct.Struct(">HHI")
# Reply metadata: seconds in pre_inference, the model and post_inference (NaN: not run), the
# batch size, the V2 binary header length; then the tracked prediction as JSON, if any.
META = struct.Struct(">dddHI")
NAN = float("nan")


def pack_meta(
    timings: dict[str, float], tracked: bytes = b"", batch: int = 0, binary_header: int = 0
) -> bytes:
    """Reply metadata as fixed binary fields (cheaper than JSON on both sides)."""
    return (
        META.pack(
            timings.get("pre_inference", NAN),
            timings.get("model", NAN),
            timings.get("post_inference", NAN),
            batch,
            binary_header,
        )
        + tracked
    )


def batch_frame(bodies: list[bytes]) -> list[bytes]:
    """The pieces of one ``BATCH`` frame (for ``writelines``)."""
    parts = [b"", BATCH, LENGTH.pack(len(bodies))]
    for body in bodies:
        parts.append(LENGTH.pack(len(body)))
        parts.append(body)
    parts[0] = LENGTH.pack(sum(len(part) for part in parts[1:]))
    return parts


def parse_batch(payload: bytes) -> list[bytes]:
    """The request bodies of a ``BATCH`` frame's payload."""
    (count,) = LENGTH.unpack_from(payload, 0)
    offset = 4
    bodies = []
    for _ in range(count):
        (size,) = LENGTH.unpack_from(payload, offset)
        bodies.append(payload[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return bodies


def batch_reply_frame(replies: list[tuple[int, bytes, bytes]]) -> bytes:
    """A ``BATCH_REPLY`` frame from (status, body, metadata) per request, in order."""
    parts = [BATCH_REPLY, LENGTH.pack(len(replies))]
    for status, body, meta in replies:
        parts.append(ITEM_HEAD.pack(status, len(meta), len(body)))
        parts.append(meta)
        parts.append(body)
    payload = b"".join(parts)
    return LENGTH.pack(len(payload)) + payload


def parse_batch_reply(payload: bytes) -> list[tuple[int, bytes, bytes]]:
    """(status, body, metadata) per request of a ``BATCH_REPLY`` payload (after the kind)."""
    (count,) = LENGTH.unpack_from(payload, 0)
    offset = 4
    replies = []
    for _ in range(count):
        status, meta_size, body_size = ITEM_HEAD.unpack_from(payload, offset)
        offset += ITEM_HEAD.size
        meta = payload[offset : offset + meta_size]
        offset += meta_size
        replies.append((status, payload[offset : offset + body_size], meta))
        offset += body_size
    return replies


def reply_frame(status: int, body: bytes, meta: bytes = b"") -> bytes:
    """A ``REPLY`` frame: HTTP status, metadata (JSON, may be empty) and the JSON body."""
    return REPLY_HEAD.pack(len(body) + len(meta) + 5, REPLY, status, len(meta)) + meta + body


class ReplicaSpec(BaseModel):
    """Everything a replica process needs to build its Predictor (sent as JSON at start)."""

    # ``.inf`` or ``.nan`` in an API's metadata reach the handler as floats, as go-yaml and
    # Cortex gave them; pydantic's JSON mode would write them as null
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    api: Api
    project_root: Path
    model_path: Path | None
    replica_id: str
    version: str
    extra_paths: tuple[Path, ...] = ()
    # The user's project folder when ``project_root`` is the operator's snapshot of it:
    # tracebacks and load errors name the user's files, not the snapshot's.
    shown_root: Path | None = None
    # The error the last replica of this version failed to load with: the same again is logged
    # as one line, not with the whole traceback at each retry.
    repeat_of: str | None = None

    def to_json(self) -> bytes:
        """The spec as JSON, a path that is not UTF-8 (a folder named in Latin-1 bytes, or any
        path but ASCII under an ASCII locale) as Python's ``json`` escapes it: pydantic's JSON
        refuses such text, and the API could not start a replica."""
        return json.dumps(self.model_dump(mode="json")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ReplicaSpec:
        """The spec ``to_json`` wrote."""
        return cls.model_validate(json.loads(data))
