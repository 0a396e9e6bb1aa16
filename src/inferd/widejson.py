"""JSON read with its integers beyond 64 bits as written: orjson reads them as floats.

Light (orjson and json only, no NumPy): the gateway reads request bodies with it (``codec``),
and the payload log's writer and readers (``inferd payloads``, ``inferd replay``) records.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads_as_written(data: bytes) -> Any:
    """JSON that inferd wrote or took (a payload record, its bodies), an integer beyond 64 bits
    kept as written; ``orjson.JSONDecodeError`` when it is not JSON."""
    value = orjson.loads(data)
    if len(data) < len(_DIGIT_RUN) or _DIGIT_RUN not in data.translate(_DIGITS):  # (its first test)
        return value
    return wide_integers_as_written(data, value)


# orjson reads an integer beyond 64 bits (18446744073709551616, -9223372036854775809) as a float,
# its digits lost (123456789012345678901234 reached a predictor as 1.2345678901234569e+23);
# Python's json, which Cortex's Flask read bodies with, keeps it as written. Such a literal is
# found without parsing again: digits made 0 and the bytes that come before a number S, it is
# S and 20 zeros (or -, 19), one C pass over the body (a tenth of orjson's time on 3 MB of
# floats). Text that looks so ("[, 12345...]" in a string) is only parsed once more.
_NUMBER_SHAPES = bytes.maketrans(b"123456789[,: \t\r\n", b"000000000SSSSSSS")
_WIDE_POSITIVE = b"S" + b"0" * 20
_WIDE_NEGATIVE = b"-" + b"0" * 19
# First, cheaper: no 19 digits in a row (a float as Python or orjson writes it has at most 17),
# no such literal. That pass alone took about half of orjson's time on 5 KB of numbers, the
# shapes' up to twice it; the payload log's writer reads bodies on the gateway's event loop.
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_DIGIT_RUN = b"0" * 19


def wide_integers_as_written(body: bytes, value: Any) -> Any:
    """``value`` (orjson's reading of ``body``), or Python's json's when the body holds an
    integer orjson made a float."""
    if _DIGIT_RUN not in body.translate(_DIGITS):
        return value
    shapes = body.translate(_NUMBER_SHAPES)
    if _WIDE_POSITIVE not in shapes and _WIDE_NEGATIVE not in shapes and not shapes.startswith(b"0" * 20):
        return value
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # past Python's 4300 digits or its recursion limit
        return value
