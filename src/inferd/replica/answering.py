"""What a replica answers to one request frame or one batch: the handler and the model's work,
every failure as an HTTP status and a JSON error body (never an exception to the frame loop in
replica/worker.py, which sends the answers; engine/ray/replica.py answers Ray's calls with it too).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any

from inferd import codec
from inferd.errors import HandlerError, InferdError
from inferd.handler.predictor import Predictor
from inferd.protocols import tfserving, tfserving_results, v2
from inferd.replica import messages
from inferd.replica.streaming import is_stream, unanswerable
from inferd.replica.tracking import tracked_value

log = logging.getLogger("inferd.replica")

V2_VERSION = "1"  # one version per API name; the gateway routes /versions/1 to it


def answer_tensors(predictor: Predictor, kind: bytes, body: bytes) -> tuple[bytes, int]:
    """A tensor-protocol request, inputs straight to the model: the body and V2 header length."""
    if kind in (messages.V2_INFER, messages.V2_INFER_BINARY):
        header_length = None
        if kind == messages.V2_INFER_BINARY:
            (header_length,) = messages.LENGTH.unpack_from(body)
            body = body[4:]
        request, inputs = v2.decode_request(body, header_length, lambda name: predictor.tensor_specs(name)[0])
        outputs = predictor.run_tensors(inputs, v2.signature_name(request))
        out, binary_header = v2.encode_response(predictor.api.name, V2_VERSION, request, outputs)
        return out, binary_header or 0
    if kind == messages.TF_PREDICT:
        request, inputs, rows = tfserving.decode_predict(body, lambda name: predictor.tensor_specs(name)[0])
        outputs = predictor.run_tensors(inputs, tfserving.signature_name(request))
        return tfserving.encode_predict(outputs, rows), 0
    request, inputs = tfserving.decode_examples(body, lambda name: predictor.tensor_specs(name)[0])
    outputs = predictor.run_tensors(inputs, tfserving.signature_name(request))
    encode = (
        tfserving_results.encode_classify
        if kind == messages.TF_CLASSIFY
        else tfserving_results.encode_regress
    )
    return encode(outputs, len(request["examples"])), 0


def answer(predictor: Predictor, kind: bytes, body: bytes) -> tuple[int, bytes, bytes] | Iterator[Any]:
    """The status, JSON body and metadata (timings, tracked value) for one request frame.

    A result that is an iterator is returned as it is: the caller streams it.
    """
    try:
        if kind in messages.TENSOR_KINDS:
            out, binary_header = answer_tensors(predictor, kind, body)
            return 200, out, messages.pack_meta(predictor.timings, binary_header=binary_header)
        result = predictor.predict(codec.loads(body), debug=kind == messages.PREDICT_DEBUG)
        if is_stream(result):
            if predictor.api.batching is None:
                return result  # type: ignore[no-any-return]
            # A batch cannot stream: refused alone too, or a client would fail only under load.
            if callable(close := getattr(result, "close", None)):
                close()
        return _encode(predictor, result, None, predictor.timings)
    except InferdError as exc:
        return _encode(predictor, None, exc, {})
    except Exception as exc:  # a bug of ours: say so, keep serving
        log.error("prediction failed:\n%s", traceback.format_exc().rstrip())
        return 500, codec.error_body(f"internal error: {type(exc).__name__}: {exc}"), b""


def answer_batch(predictor: Predictor, payload: bytes) -> bytes:
    """A ``BATCH`` frame: decode each body, one model call, one reply per request, in order."""
    bodies = messages.parse_batch(payload)
    replies: list[tuple[int, bytes, bytes] | None] = [None] * len(bodies)
    samples: list[Any] = []
    positions: list[int] = []
    for index, body in enumerate(bodies):
        try:
            samples.append(codec.loads(body))
            positions.append(index)
        except InferdError as exc:
            replies[index] = (exc.status_code, codec.error_body(exc.message), b"")
    try:
        outcomes = predictor.predict_batch(samples) if samples else []
    except Exception as exc:  # a bug of ours: fail this batch, keep serving
        log.error("batch failed:\n%s", traceback.format_exc().rstrip())
        body = codec.error_body(f"internal error: {type(exc).__name__}: {exc}")
        return messages.batch_reply_frame([(500, body, b"")] * len(bodies))
    for index, (result, error, timings) in zip(positions, outcomes, strict=True):
        try:
            replies[index] = _encode(predictor, result, error, timings, batch=len(samples))
        except Exception as exc:  # a bug of ours: this sample's 500, as alone; the others go on
            log.error("prediction failed:\n%s", traceback.format_exc().rstrip())
            replies[index] = (500, codec.error_body(f"internal error: {type(exc).__name__}: {exc}"), b"")
    return messages.batch_reply_frame([reply for reply in replies if reply is not None])


def _encode(
    predictor: Predictor, result: Any, error: InferdError | None, timings: dict[str, float], batch: int = 0
) -> tuple[int, bytes, bytes]:
    """One answer: the JSON of ``result`` (or of ``error``) and its metadata."""
    if error is None:
        try:
            out = codec.dumps_answer(result)
        except TypeError as exc:
            stage = "predict" if predictor.runtime is None else "post_inference"
            reason = unanswerable(result) or str(exc)
            if is_stream(result):  # only APIs with batching get here with an iterator
                reason = "an iterator streams only without batching (remove the api's batching)"
            error = HandlerError(f"{stage} returned a value that is not JSON-serialisable: {reason}")
    if error is not None:
        if error.status_code >= 500:
            log.error("prediction failed: %s", error.message)
        return error.status_code, codec.error_body(error.message), b""
    tracked = tracked_value(result, predictor.api.tracker)
    return 200, out, messages.pack_meta(timings, b"" if tracked is None else codec.dumps(tracked), batch)
