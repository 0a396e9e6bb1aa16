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
    return wide_integers_as_written(data, orjson.loads(data))


# orjson reads an integer beyond 64 bits (18446744073709551616, -9223372036854775809) as a float,
# its digits lost (123456789012345678901234 reached a predictor as 1.2345678901234569e+23);
# Python's json, which Cortex's Flask read bodies with, keeps it as written. Such a literal is
# found without parsing again: with digits and - made 0 and the bytes that come before a number
# (or its -) S, it is S and 20 zeros, or the whole body (a float to orjson). One C pass and, where
# 20 digits stand in a row (rare: a float from 0.0001 to 0.001 as Python writes it has them,
# 0.00012345678901234567; below, it writes 1.2345678901234567e-05), one search
# for that (timeit, 5.4 KB of 788 floats: 2.3 us to translate, 0.9 to look for 20 zeros, where a
# search for S and 20 zeros took 3.3 us, the S being in every ", "; orjson's parse: 13 us). Text
# that looks so (a 20-digit integer that fits, " -----..." or "[, 12345..." in a string) is only
# parsed once more. The payload log's writer reads bodies so too, on the gateway's event loop.
_NUMBER_SHAPES = bytes.maketrans(b"123456789-[,: \t\r\n", b"0000000000SSSSSSS")
_DIGITS = b"0" * 20
_WIDE = b"S" + _DIGITS


def wide_integers_as_written(body: bytes, value: Any) -> Any:
    """``value`` (orjson's reading of ``body``), or Python's json's when the body holds an
    integer orjson made a float."""
    if len(body) < len(_DIGITS):
        return value
    shapes = body.translate(_NUMBER_SHAPES)
    if _DIGITS not in shapes:
        return value
    if _WIDE not in shapes and (type(value) is not float or not shapes.startswith(_DIGITS)):
        return value
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # past Python's 4300 digits or its recursion limit
        return value
