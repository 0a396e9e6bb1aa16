"""Open Inference Protocol (KServe V2) REST: JSON tensors and the binary tensor data extension.

Inputs go straight to the model (no request handler). Datatypes must match the model's inputs
exactly and shapes must fit its dimensions (``-1`` takes any size): anything else is a 400
naming the input. Outputs that are not tensors (an ONNX ZipMap, a sequence of maps) are sent
as BYTES, one JSON document per row (an ONNX map output: one document, shape [1]); an ONNX
optional output that holds nothing is left out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from math import prod
from typing import Any

import numpy as np
import orjson

from inferd import codec
from inferd.errors import InputError
from inferd.handler.convert import MAP_TYPE, SEQ_TYPE, inputs_named, reason, shape_text
from inferd.handler.numbers import NotNumbers, OutOfRange, typed_numbers
from inferd.protocols import nonfinite
from inferd.protocols.booleans import BooleansInLists
from inferd.protocols.v2_bytes import bytes_elements, map_input, parameters_of, sequence_input
from inferd.protocols.v2_types import datatype_of, numpy_dtype, tensor_metadata
from inferd.runtimes.base import TensorSpec

MAX_ELEMENTS = 1 << 28  # refuse absurd declared shapes before allocating anything
MAX_DIMENSIONS = 32  # numpy 1.x's limit (numpy 2's is 64)


@cache
def _model_datatype(spec: TensorSpec) -> str:
    """The V2 datatype of a model input (remembered: ``describe`` and ``dtype.name`` cost ~15 us
    a request of one small input)."""
    return str(tensor_metadata(spec.describe())["datatype"])


def _check_bool_bytes(name: str, raw: bytes | memoryview) -> None:
    """A BOOL is one byte, 0 or 1: numpy keeps any other byte in a bool, which a model reads as
    neither (onnxruntime's Not of a 2 is true)."""
    values = np.frombuffer(raw, dtype=np.uint8)
    wrong = values[values > 1]
    if wrong.size:
        raise InputError(
            f"input '{name}': binary BOOL data holds the byte {int(wrong[0])} (a BOOL byte is 0 or 1)"
        )


def _check_shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InputError(f"input '{name}': shape must be a list of non-negative integers")
    if prod(shape) > MAX_ELEMENTS:
        raise InputError(f"input '{name}': shape {shape} is too large ({prod(shape)} elements)")
    # beside a 0 (no elements), a dimension numpy cannot hold, or more dimensions than numpy 1.x
    # takes, was a 500 "internal error: ValueError: array is too big"
    if max(shape, default=0) > MAX_ELEMENTS:
        raise InputError(f"input '{name}': shape {shape} has a dimension larger than {MAX_ELEMENTS}")
    if len(shape) > MAX_DIMENSIONS:
        raise InputError(f"input '{name}': shape has {len(shape)} dimensions (at most {MAX_DIMENSIONS})")
    return tuple(shape)


def _fits(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    if spec.shape is None:
        return True
    return len(shape) == len(spec.shape) and all(
        t is None or t == s for s, t in zip(shape, spec.shape, strict=True)
    )


def _check_flag(parameters: dict[str, Any], key: str, where: str) -> None:
    """A boolean parameter is true or false (as Triton reads it; "false" is not false)."""
    if key in parameters and not isinstance(parameters[key], bool):
        raise InputError(f"{where}: '{key}' must be true or false, not {codec.shown(parameters[key])}")


def _check_outputs(request: dict[str, Any]) -> None:
    """The request's ``parameters`` and ``outputs`` have the spec's shape (checked before the
    model runs; ``encode_response`` reads them)."""
    _check_flag(parameters_of(request.get("parameters"), "the request"), "binary_data_output", "the request")
    outputs = request.get("outputs")
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise InputError("'outputs' must be a list of objects with a 'name'")
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InputError("each of 'outputs' must be an object with a 'name'")
        where = f"output '{item['name']}'"
        _check_flag(parameters_of(item.get("parameters"), where), "binary_data", where)


def signature_name(request: dict[str, Any]) -> str | None:
    """The request's ``parameters.signature_name``: which signature of a TensorFlow model with
    several to run, as TF Serving's request names it (``None``: the API's own)."""
    name = parameters_of(request.get("parameters"), "the request").get("signature_name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"'signature_name' must be a string, not {codec.shown(name, 100)}")
    return name or None


def decode_request(
    body: bytes,
    header_length: int | None,
    specs: list[TensorSpec] | Callable[[str | None], list[TensorSpec]],
) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
    """The request document and one array per model input. Raises ``InputError``.

    ``specs`` may be a function of the request's ``signature_name`` (the inputs of that
    signature), called once the request is read."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise InputError("Inference-Header-Content-Length is larger than the request body")
    header = body if header_length is None else body[:header_length]
    request = codec.loads(header)  # NaN and Infinity too, as Triton reads them (1e999 is refused)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InputError("the request must be an object with an 'inputs' list")
    if not isinstance(request.get("id", ""), str):
        raise InputError("'id' must be a string (the protocol's request id, echoed in the answer)")
    _check_outputs(request)
    if callable(specs):
        specs = specs(signature_name(request))
    booleans = BooleansInLists(header)
    by_name = {spec.name: spec for spec in specs}
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    offset = 0
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for item in request["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InputError("each input must be an object with a 'name'")
        name = item["name"]
        spec = by_name.get(name)
        if spec is None:
            raise InputError(f"unexpected input '{name}': {inputs_named(list(by_name))}")
        if name in arrays:
            raise InputError(f"input '{name}' is given twice")
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise InputError(f"input '{name}': 'datatype' is missing")
        dtype = numpy_dtype(datatype)
        expected = _model_datatype(spec)
        if datatype != expected:
            raise InputError(f"input '{name}': datatype {datatype} does not match the model's {expected}")
        shape = _check_shape(name, item.get("shape"))
        if spec.type_name.startswith(MAP_TYPE):
            arrays[name], offset = map_input(name, item, spec, shape, binary, offset)
            continue
        if not _fits(spec, shape):
            raise InputError(
                f"input '{name}': shape {list(shape)} does not fit the model's {shape_text(spec.shape)}"
            )
        count = prod(shape)
        parameters = parameters_of(item.get("parameters"), f"input '{name}'")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InputError(f"input '{name}': binary_data_size must be a number of bytes")
            if offset + size > len(binary):
                raise InputError(f"input '{name}': binary_data_size {size} runs past the end of the body")
            raw = binary[offset : offset + size]
            offset += size
            if datatype == "BYTES":
                array = bytes_elements(name, raw, count)
                if spec.type_name.startswith(SEQ_TYPE):
                    arrays[name] = sequence_input(name, array.tolist(), spec)
                    continue
            else:
                if size != count * dtype.itemsize:
                    raise InputError(
                        f"input '{name}': binary_data_size is {size} bytes, but shape "
                        f"{list(shape)} of {datatype} needs {count * dtype.itemsize}"
                    )
                array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
                if datatype == "BOOL":
                    _check_bool_bytes(name, raw)
        else:
            if "data" not in item:
                raise InputError(f"input '{name}': no 'data' and no binary_data_size")
            array = _from_json(name, item["data"], dtype, datatype, shape, booleans)
            if spec.type_name.startswith(SEQ_TYPE):
                arrays[name] = sequence_input(name, array.tolist(), spec)
                continue
        arrays[name] = array.reshape(shape)
    if offset != len(binary):
        raise InputError("the binary part of the body is longer than the inputs' binary_data_size")
    missing = [name for name, spec in by_name.items() if name not in arrays and not spec.optional]
    if missing:
        raise InputError(f"missing input '{missing[0]}'")
    return request, arrays


def _from_json(
    name: str,
    data: Any,
    dtype: np.dtype[Any],
    datatype: str,
    shape: tuple[int, ...],
    booleans: Callable[[], bool] | None = None,
) -> np.ndarray[Any, Any]:
    count = prod(shape)
    try:
        if datatype == "BYTES":
            nested = np.array(data, dtype=object)
            array = np.empty(nested.size, dtype=object)
            array[:] = [_json_bytes(item) for item in nested.ravel()]
        else:
            # numbers only (numpy parses "3", takes true as 1 and null as NaN for a float), and
            # 1e39 as FP32 (70000 as FP16) is not silently inf, nor 1.5 as INT64 silently 1
            nested = typed_numbers(data, dtype, datatype, booleans=booleans)
            array = nested.ravel()
    except NotNumbers as exc:
        if exc.what == "text":
            shown = codec.shown(exc.item if isinstance(exc.item, str) else str(exc.item))
            raise InputError(f"input '{name}': {datatype} data holds text ({shown}), not numbers") from None
        if exc.what == "true/false":  # BOOL is its own datatype
            raise InputError(f"input '{name}': {datatype} data holds true/false, not numbers") from None
        raise InputError(f"input '{name}': data is not {datatype}: {exc}") from None
    except OutOfRange as exc:
        raise InputError(f"input '{name}': {exc}") from None
    except FloatingPointError:
        raise InputError(f"input '{name}': a value is out of {datatype}'s range") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"input '{name}': data is not {datatype}: {reason(exc)}") from None
    if array.size != count:
        raise InputError(f"input '{name}': data has {array.size} elements, the shape says {count}")
    if nested.ndim > 1 and _regrouped(nested.shape, shape):  # flat data is row-major; nested says its shape
        raise InputError(
            f"input '{name}': data is nested as {list(nested.shape)}, but the shape says {list(shape)}"
        )
    return array


def _regrouped(nested: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether data nested as ``nested`` means other rows than ``shape`` (size-1 axes aside: an
    image nested [3, 224, 224] under shape [1, 3, 224, 224] keeps every value where it was)."""
    return [d for d in nested if d != 1] != [d for d in shape if d != 1]


def _json_bytes(item: Any) -> bytes:
    """One BYTES element of JSON data: a string (null or a number would reach the model as text)."""
    if isinstance(item, str):
        return item.encode()
    what = "a list (the nesting is ragged)" if isinstance(item, list) else codec.shown(item)
    raise TypeError(f"BYTES elements are strings, not {what}")


def _as_tensor(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, np.ndarray) and value.dtype.kind not in "O":
        return value
    if isinstance(value, np.ndarray):
        flat = [
            v
            if isinstance(v, bytes | str)
            else orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
            for v in value.ravel().tolist()
        ]
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(value.shape)
    if isinstance(value, dict):  # an ONNX map output: one JSON document (shape [1])
        value = [value]
    rows = list(value)  # a sequence of maps (ZipMap): one JSON document per row
    array = np.empty(len(rows), dtype=object)
    array[:] = [
        orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY) for row in rows
    ]
    return array


def _to_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def _json_text(name: str, item: Any) -> str:
    """A BYTES element as JSON text; bytes that are not UTF-8 would reach the client changed."""
    try:
        return _to_bytes(item).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            f"output '{name}' holds bytes that are not UTF-8 text, which JSON cannot carry: ask for "
            'it as binary data ("parameters": {"binary_data": true})'
        ) from None


def _classified(name: str, value: Any, count: Any) -> np.ndarray[Any, Any]:
    """Triton's classification extension: the ``count`` largest values along the last axis, each
    as ``"value:index"`` (BYTES), largest first."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InputError(f"output '{name}': 'classification' must be a positive integer, not {count!r}")
    if isinstance(value, np.ndarray) and value.dtype.name == "bfloat16":
        value = value.astype(np.float32)  # each exactly; numpy's kind for it is "V"
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf" or value.ndim == 0:
        raise InputError(f"output '{name}': 'classification' needs a numeric output with a class axis")
    order = np.argsort(-value.astype(np.float64), axis=-1, kind="stable")[..., :count]
    top = np.take_along_axis(value, order, axis=-1)
    labels = np.empty(order.size, dtype=object)
    labels[:] = [
        f"{v}:{i}".encode() for v, i in zip(top.ravel().tolist(), order.ravel().tolist(), strict=True)
    ]
    return labels.reshape(order.shape)


def encode_response(
    model: str, version: str, request: dict[str, Any], outputs: dict[str, Any]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    parameters = request.get("parameters") or {}
    all_binary = bool(parameters.get("binary_data_output")) if isinstance(parameters, dict) else False
    wanted: list[tuple[str, bool]] = []
    if request.get("outputs"):  # none asked for ([] too, as Triton and KServe read it): all of them
        for item in request["outputs"]:
            name = item.get("name") if isinstance(item, dict) else None
            if name not in outputs:
                raise InputError(
                    f"unknown output '{name}': the model's outputs are "
                    + ", ".join(f"'{n}'" for n in outputs)
                )
            if outputs[name] is None:
                continue  # an ONNX optional output that holds nothing this run: V2 has no null tensor
            options = item.get("parameters") or {}
            wanted.append((name, bool(options.get("binary_data", all_binary))))
            if "classification" in options:
                outputs = {**outputs, name: _classified(name, outputs[name], options["classification"])}
    else:
        wanted = [(name, all_binary) for name, value in outputs.items() if value is not None]
    documents = []
    blobs: list[bytes] = []
    marked = False
    for name, binary in wanted:
        tensor = _as_tensor(outputs[name])
        datatype = datatype_of(tensor.dtype)
        document: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(tensor.shape)}
        if binary:
            if datatype == "BYTES":
                blob = b"".join(
                    struct.pack("<I", len(b := _to_bytes(v))) + b for v in tensor.ravel().tolist()
                )
            else:
                blob = np.ascontiguousarray(tensor, dtype=tensor.dtype.newbyteorder("<")).tobytes()
            document["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            document["data"] = [_json_text(name, v) for v in tensor.ravel().tolist()]
        else:
            if datatype == "BF16":  # orjson cannot write bfloat16; float32 holds each one exactly
                tensor = tensor.astype(np.float32)
            if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
                document["data"] = nonfinite.listed(tensor.ravel())  # NaN, Infinity: as Triton writes them
                marked = True
            else:
                document["data"] = tensor.ravel()
        documents.append(document)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": documents}
    if "id" in request:
        response["id"] = codec.echoed(request["id"])  # a lone surrogate too, as its escape
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if marked:
        header = nonfinite.unmark(header)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
