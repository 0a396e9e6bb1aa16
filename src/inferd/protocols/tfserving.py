"""TensorFlow Serving REST (and KServe V1): predict in row or columnar form, classify, regress.

``{"instances": [...]}`` is the row format (one element per example, objects when the model has
several inputs) and answers ``{"predictions": [...]}``; ``{"inputs": ...}`` is the columnar
format (a tensor, or an object of tensors) and answers ``{"outputs": ...}``. ``{"b64": ...}``
values are binary strings. Inputs are cast and fitted to the signature as for Cortex requests.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from inferd import codec
from inferd.errors import InputError
from inferd.handler.convert import MAP_TYPE, NO_INPUTS, SEQ_TYPE, inputs_named, shape_text, to_array
from inferd.protocols import nonfinite
from inferd.protocols.booleans import BooleansInLists
from inferd.runtimes.base import TensorSpec

EXPLAIN = "explain"  # KServe V1's verb beside predict: known, not served


def no_explainer(model: str) -> str:
    return (
        f"model '{model}' has no explainer: KServe V1's :explain is not implemented "
        "(:predict, :classify and :regress are)"
    )


def _loads(body: bytes) -> dict[str, Any]:
    request = codec.loads(body)  # NaN and Infinity too, as TF Serving reads them (1e999 is refused)
    if not isinstance(request, dict):
        raise InputError("the request must be a JSON object")
    return request


Specs = list[TensorSpec] | Callable[[str | None], list[TensorSpec]]


def signature_name(request: dict[str, Any]) -> str | None:
    """The request's ``signature_name`` (``None`` when absent)."""
    name = request.get("signature_name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"'signature_name' must be a string, not {codec.shown(name, 100)}")
    return name or None


def _specs(request: dict[str, Any], specs: Specs) -> list[TensorSpec]:
    """The inputs: ``specs``, or what it answers for the request's signature (read once with
    the request: reading the body twice cost a second parse, ~200 us for 4,000 numbers)."""
    return specs(signature_name(request)) if callable(specs) else specs


def _may_hold_b64(body: bytes) -> bool:
    """Whether the request's text may hold a ``{"b64": ...}`` object.

    The walk that decodes them visits every value in Python: ~900 us for 4,000 numbers, four
    times their conversion. Asking the text costs ~4 us (one ``{``, the request's own, found by
    memchr) to ~60 us (``b64`` sought in 80 KB, when objects are there: the row format's)."""
    first = body.find(b"{")
    if body.find(b"{", first + 1) == -1:
        return False
    # a key may spell b64 with escapes; UTF-16 and UTF-32 bodies (Python's json reads them) hold NULs
    return b"b64" in body or b"\\" in body or b"\x00" in body


def _decoded(value: Any, b64: bool = True) -> Any:
    """``value`` with ``{"b64": ...}`` objects decoded (``b64``: the text may hold one); deep
    nesting is a 400, not a crash."""
    if not b64:
        return value
    try:
        return _unb64(value)
    except RecursionError:
        raise InputError("the JSON is nested too deeply") from None


def _unb64(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError as exc:
                raise InputError(f"invalid base64 value: {exc}") from None
        return {key: _unb64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unb64(item) for item in value]
    return value


Booleans = Callable[[], bool]  # may the request's text hide true or false in a number tensor?


def _booleans_in(body: bytes) -> Booleans:
    # the row format and examples make a tensor of objects' values, which follow a ':'
    return BooleansInLists(body, b"[,:")


def _by_name(
    specs: list[TensorSpec],
    values: dict[str, Any],
    booleans: Booleans,
    rows: int | None = None,
    what: str = "instances",
) -> dict[str, np.ndarray[Any, Any]]:
    names = [spec.name for spec in specs]
    for key in values:
        if key not in names:
            raise InputError(f"unexpected input '{key}': {inputs_named(names)}")
    missing = [spec.name for spec in specs if spec.name not in values and not spec.optional]
    if missing:
        raise InputError(f"missing input '{missing[0]}'")
    given = [spec for spec in specs if spec.name in values]  # an optional input may be left out
    if rows is None:
        return {spec.name: to_array(values[spec.name], spec, True, booleans) for spec in given}
    return {spec.name: _rows_array(values[spec.name], spec, rows, booleans, what) for spec in given}


def _rows_array(
    value: Any, spec: TensorSpec, rows: int, booleans: Booleans, what: str = "instances"
) -> np.ndarray[Any, Any]:
    """One input of a row-format request: each instance (example) is one row of the batch.

    The fitting that lets a bare sample stand for a batch of one would otherwise read three
    numbers sent as three instances as one row of three, answering one prediction for three.
    """
    if spec.shape == () or spec.type_name.startswith(SEQ_TYPE):
        # not "expected shape [], got shape [1]" of the scalar the client sent
        hint = ": send the columnar format ('inputs')" if what == "instances" else ""
        kind = "a sequence, one per run" if spec.shape else "a scalar"
        raise InputError(
            f"input '{spec.name}' is {kind} (it has no batch dimension), so it cannot be sent as "
            f"rows ('{what}'){hint}"
        )
    array = to_array(value, spec, True, booleans)
    if array.ndim == 0 or array.shape[0] != rows:
        try:
            given = np.shape(value[0]) if rows and isinstance(value, list) else ()
        except ValueError:  # ragged
            given = ()
        raise InputError(
            f"input '{spec.name}': {rows} {what} of shape {list(given)} do not fit the model's "
            f"{shape_text(spec.shape)} (each of '{what}' is one row of the batch)"
        )
    return array


def _map_instance(
    rows: list[Any], specs: list[TensorSpec], booleans: Booleans
) -> dict[str, np.ndarray[Any, Any]]:
    """The inputs of a model with an ONNX map input, which takes one map per run: one instance,
    an object of named inputs, or the map itself for a single-input model."""
    if len(rows) != 1 or not isinstance(rows[0], dict):
        name = next(spec.name for spec in specs if spec.type_name.startswith(MAP_TYPE))
        raise InputError(
            f"input '{name}' is a map, one per run: 'instances' must hold one instance (an object)"
        )
    (row,) = rows
    if len(specs) == 1 and specs[0].name not in row:
        row = {specs[0].name: row}
    return _by_name(specs, row, booleans)


def decode_predict(body: bytes, specs: Specs) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The request, one array per input, and whether it used the row format; ``specs`` may be
    a function of the request's ``signature_name``."""
    request = _loads(body)
    specs = _specs(request, specs)
    booleans = _booleans_in(body)
    b64 = _may_hold_b64(body)
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows == has_columns:
        raise InputError("the request must have exactly one of 'instances' (rows) or 'inputs' (columns)")
    if has_rows:
        rows = _decoded(request["instances"], b64)
        if not isinstance(rows, list):
            raise InputError("'instances' must be a list")
        if any(spec.type_name.startswith(MAP_TYPE) for spec in specs):
            return request, _map_instance(rows, specs, booleans), True
        if len(specs) == 1 and not (rows and isinstance(rows[0], dict)):
            return request, {specs[0].name: _rows_array(rows, specs[0], len(rows), booleans)}, True
        if not all(isinstance(row, dict) for row in rows):
            if not specs:
                raise InputError(NO_INPUTS)
            raise InputError("with several inputs, each of 'instances' must be an object of named inputs")
        columns = {spec.name: [row.get(spec.name) for row in rows] for spec in specs}
        for spec in specs:  # an optional input left out of every instance is left out
            if spec.optional and all(value is None for value in columns[spec.name]):
                del columns[spec.name]
        for name, values in columns.items():
            if any(value is None for value in values):
                raise InputError(f"missing input '{name}' in some of 'instances'")
        extra = {key for row in rows for key in row} - set(columns)
        if extra:
            return request, _by_name(specs, {**columns, **dict.fromkeys(extra)}, booleans), True
        return request, _by_name(specs, columns, booleans, len(rows)), True
    columns_value = _decoded(request["inputs"], b64)
    if isinstance(columns_value, dict):
        return request, _by_name(specs, columns_value, booleans), False
    if not specs:
        raise InputError(NO_INPUTS)
    if len(specs) != 1:
        raise InputError("the model has several inputs: 'inputs' must be an object of named tensors")
    return request, {specs[0].name: to_array(columns_value, specs[0], True, booleans)}, False


def _value(name: str, value: Any) -> Any:
    if name.endswith("_bytes"):
        if isinstance(value, bytes | str):
            raw = value.encode() if isinstance(value, str) else value
            return {"b64": base64.b64encode(raw).decode("ascii")}
        if isinstance(value, list):
            return [_value(name, item) for item in value]
    return value


def _rows(value: Any) -> Any:
    """A tensor as lists; non-finite floats go out as TF Serving writes them (NaN, Infinity,
    -Infinity), not JSON's null. An ONNX optional output that holds nothing is ``None`` (null)."""
    if value is None or isinstance(value, dict):  # a map output (ONNX's) is one JSON object
        return value
    return nonfinite.listed(value) if isinstance(value, np.ndarray) else list(value)


def encode_predict(outputs: dict[str, Any], rows: bool) -> bytes:
    """``{"predictions": ...}`` for the row format, ``{"outputs": ...}`` for the columnar one."""
    if not rows:
        if len(outputs) == 1:
            ((name, value),) = outputs.items()
            return nonfinite.dumps({"outputs": _value(name, _rows(value))})
        return nonfinite.dumps(
            {"outputs": {name: _value(name, _rows(value)) for name, value in outputs.items()}}
        )
    # an ONNX map output is one per run, as its map input takes one instance: that row's value
    outputs = {name: [value] if isinstance(value, dict) else value for name, value in outputs.items()}
    for name, value in outputs.items():
        if value is None:  # an ONNX optional output that holds nothing: null in every row
            continue
        if not isinstance(value, np.ndarray | list | tuple) or getattr(value, "ndim", 1) == 0:
            raise InputError(
                f"output '{name}' is a scalar (it has no batch dimension), so it cannot be "
                "answered as rows ('instances'): send the columnar format ('inputs')"
            )
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return nonfinite.dumps({"predictions": _value(name, _rows(value))})
    columns = {name: _rows(value) for name, value in outputs.items()}
    sizes = {len(column) for column in columns.values() if column is not None}
    if len(sizes) > 1:
        raise InputError("the outputs have different batch sizes: use the columnar format ('inputs')")
    count = sizes.pop() if sizes else 0
    return nonfinite.dumps(
        {
            "predictions": [
                {
                    name: None if column is None else _value(name, column[i])
                    for name, column in columns.items()
                }
                for i in range(count)
            ]
        }
    )


def decode_examples(body: bytes, specs: Specs) -> tuple[dict[str, Any], dict[str, Any]]:
    """``:classify`` / ``:regress``: examples (plus a shared context) -> one array per input."""
    request = _loads(body)
    specs = _specs(request, specs)
    examples = _decoded(request.get("examples"))
    if not isinstance(examples, list) or not examples or not all(isinstance(e, dict) for e in examples):
        raise InputError("'examples' must be a non-empty list of objects of features")
    context = _decoded(request.get("context") or {})
    if not isinstance(context, dict):
        raise InputError("'context' must be an object of features")
    merged = [{**context, **example} for example in examples]
    columns: dict[str, Any] = {}
    for spec in specs:
        values = [example.get(spec.name) for example in merged]
        if spec.optional and all(value is None for value in values):
            continue  # an optional input left out of every example is left out
        if any(value is None for value in values):
            raise InputError(f"missing feature '{spec.name}' in some of 'examples'")
        columns[spec.name] = values
    return request, _by_name(specs, columns, _booleans_in(body), len(merged), "examples")


def signature_def(info: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/models/{name}/metadata``: TF Serving's GetModelMetadataResponse body."""
    defs = info.get("signature_def")
    if defs is None:  # ONNX: describe the model as one serving_default signature
        defs = {
            "serving_default": {
                "inputs": {s["name"]: _tensor_info(s) for s in info.get("inputs") or []},
                "outputs": {s["name"]: _tensor_info(s) for s in info.get("outputs") or []},
                "methodName": "tensorflow/serving/predict",
            }
        }
    return {"signature_def": _snake(defs)}


TF_TYPES = {
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "float16": "DT_HALF",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "bool": "DT_BOOL",
    "object": "DT_STRING",
}


def _tensor_info(spec: dict[str, Any]) -> dict[str, Any]:
    shape = spec["shape"]
    tensor_shape: dict[str, Any] = (
        {"unknownRank": True} if shape is None else {"dim": [{"size": str(d)} for d in shape]}
    )
    return {
        "dtype": TF_TYPES.get(spec["dtype"], "DT_INVALID"),
        "tensorShape": tensor_shape,
        "name": spec["name"],
    }


def _snake(value: Any) -> Any:
    # TF Serving prints protobuf field names as they are (snake_case); Cortex's handlers got
    # the camelCase protobuf-JSON form, which is what the runtime keeps.
    if isinstance(value, dict):
        return {_snake_key(key): _snake(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_snake(item) for item in value]
    return value


def _snake_key(key: str) -> str:
    if key in ("tensorShape", "methodName", "unknownRank"):
        return "".join("_" + c.lower() if c.isupper() else c for c in key)
    return key
