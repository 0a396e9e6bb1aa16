"""Open Inference Protocol (KServe V2) BYTES: binary elements, request parameters, and ONNX's
inputs that are not tensors (a map, a sequence), which V2 carries as BYTES JSON documents.
"""

from __future__ import annotations

import struct
from math import prod
from typing import Any

import numpy as np

from inferd import codec
from inferd.errors import InputError
from inferd.handler.convert import to_map, to_sequence
from inferd.runtimes.base import TensorSpec


def bytes_elements(name: str, raw: bytes | memoryview, count: int) -> np.ndarray[Any, Any]:
    """``count`` BYTES elements of binary data, each a 4-byte little-endian length and its bytes."""
    items: list[bytes] = []
    offset = 0
    view = memoryview(raw)
    for _ in range(count):
        if offset + 4 > len(view):
            raise InputError(f"input '{name}': binary BYTES data is shorter than its shape says")
        (size,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + size > len(view):
            raise InputError(f"input '{name}': a BYTES element runs past the end of the data")
        items.append(bytes(view[offset : offset + size]))
        offset += size
    if offset != len(view):
        raise InputError(f"input '{name}': binary_data_size does not match the BYTES elements")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def parameters_of(value: Any, where: str) -> dict[str, Any]:
    """A ``parameters`` object (``{}`` when absent); 400 when it is not an object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where}: 'parameters' must be an object")
    return value


def map_input(
    name: str, item: dict[str, Any], spec: TensorSpec, shape: tuple[int, ...], binary: memoryview, offset: int
) -> tuple[np.ndarray[Any, Any], int]:
    """An ONNX map input (V2 has no map datatype): one BYTES element holding a JSON object (or
    the object itself in ``data``); the binary offset after it."""
    if prod(shape) != 1:
        raise InputError(f"input '{name}': a {spec.type_name} input takes one JSON object (shape [1])")
    size = parameters_of(item.get("parameters"), f"input '{name}'").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary) - offset:
            raise InputError(f"input '{name}': binary_data_size must fit the binary part of the body")
        element: Any = bytes_elements(name, binary[offset : offset + size], 1)[0]
        offset += size
    else:
        element = item.get("data")
        while isinstance(element, list) and len(element) == 1:
            element = element[0]
    if isinstance(element, str | bytes):
        try:
            element = _document(element)
        except InputError:
            raise InputError(f"input '{name}': a {spec.type_name} input takes a JSON object") from None
    return to_map(element, spec), offset


def _document(element: str | bytes) -> Any:
    """A BYTES element's JSON, read as the request's: a key holding a lone surrogate, NaN, an
    integer beyond 64 bits as written (orjson refused the first two, "takes a JSON object" for
    a JSON object, and made the last a float)."""
    return codec.loads(element.encode("utf-8", "surrogatepass") if isinstance(element, str) else element)


def sequence_input(name: str, elements: list[bytes], spec: TensorSpec) -> np.ndarray[Any, Any]:
    """An ONNX sequence input (V2 has no sequence datatype): BYTES elements, each a tensor as a
    JSON document (nested lists), as a sequence output is answered."""
    try:
        tensors = [_document(element) for element in elements]
    except InputError:
        raise InputError(
            f"input '{name}': a {spec.type_name} input takes BYTES elements that are JSON tensors "
            "(nested lists of numbers)"
        ) from None
    return to_sequence(tensors, spec, strict=True)
