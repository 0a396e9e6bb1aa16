"""Answers encode NumPy arrays as their ``tolist()`` (Cortex's json_tricks did), whatever the
dtype, layout or byte order: orjson writes the numeric ones itself, which must not change a digit."""

from __future__ import annotations

import ctypes
import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferd import codec
from inferd.errors import InputError

rng = np.random.default_rng(7)

ARRAYS = {
    "float32": (rng.standard_normal((4, 5)) * 1e3).astype(np.float32),
    "float32 specials": np.array([0.1, 1e-45, 3.4e38, np.nan, np.inf, -0.0] * 20, dtype=np.float32),
    "float16": rng.standard_normal(70).astype(np.float16),
    "float64 long": rng.standard_normal(200),
    "float64": rng.standard_normal((2, 3, 2)),
    "int8": np.array([-128, 0, 127], dtype=np.int8),
    "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "int64": np.array([-(2**63), 2**63 - 1]),
    "bool": np.array([True, False]),
    "non-contiguous": rng.standard_normal((4, 4)).astype(np.float32)[:, 1],
    "big-endian": np.array([1.5, 0.1], dtype=">f4"),
    "big-endian int": np.array([1, -2], dtype=">i4"),
    "zero-dim": np.array(np.float32(0.1)),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "text": np.array(["a", "bé"]),
    "objects": np.array([1, "two", None], dtype=object),
    "long float32": rng.standard_normal((3, 100)).astype(np.float32),
    "long non-contiguous": rng.standard_normal((300, 2)).astype(np.float32)[:, 0],
    "long int32": np.arange(-100, 100, dtype=np.int32),
    "long bool": np.arange(100) % 3 == 0,
    "long big-endian": np.arange(100, dtype=">f4") / 7,
}


@pytest.mark.parametrize("name", ARRAYS)
def test_an_answer_array_is_encoded_as_its_tolist(name: str) -> None:
    array: Any = ARRAYS[name]
    answer: Any = {"predictions": array, "rows": [array, array]}
    expected = {"predictions": array.tolist(), "rows": [array.tolist(), array.tolist()]}
    assert codec.dumps_answer(answer) == orjson.dumps(expected)


def test_a_float32_answer_is_the_float64_number_it_holds() -> None:
    assert codec.dumps_answer(np.array([0.3], dtype=np.float32)) == b"[0.30000001192092896]"


def test_an_answer_that_contains_itself_or_nests_too_deep_says_so() -> None:
    # It was a RecursionError from the retry with plain keys: "internal error" (blaming inferd)
    # and a 3,000-line traceback in the API's log.
    itself: dict[str, Any] = {}
    itself["self"] = itself
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    for value in (itself, deep, {np.int64(1): itself}):
        with pytest.raises(TypeError, match=r"^lists and dicts nested more than 254 levels deep \(or one"):
            codec.dumps_answer(value)


def test_an_answer_with_a_key_json_cannot_write_names_the_key() -> None:
    # orjson said "Dict key must a type serializable with OPT_NON_STR_KEYS"
    with pytest.raises(TypeError, match=r"^a dict key \(1, 2\) of type tuple: JSON keys are strings"):
        codec.dumps_answer({"rows": [{"a": 1}, {(1, 2): "pair"}]})
    assert codec.dumps_answer({np.int64(1): {2: "b", None: "n"}}) == b'{"1":{"2":"b","null":"n"}}'


@pytest.mark.parametrize(
    ("accept", "events"),
    [
        ("text/event-stream", True),
        ("TEXT/Event-Stream", True),  # media types are case-insensitive (RFC 9110)
        ("text/event-stream; charset=utf-8", True),
        ("application/json, text/event-stream", True),
        ("text/event-stream, */*;q=0.1", True),
        ("application/x-ndjson, text/event-stream", True),  # README: NDJSON only if weighed higher
        ("text/event-stream, */*", True),
        ("text/event-stream;q=0.5, application/x-ndjson", False),  # NDJSON is preferred
        ("application/x-ndjson;q=0.2, text/event-stream;q=0.9", True),
        ("text/event-stream;q=0", False),  # "not acceptable"
        ("text/event-stream;q=oops", True),  # a malformed weight counts as 1
        ("", False),
        ("*/*", False),
        ("text/*", False),
        ("application/json", False),
    ],
)
def test_a_stream_is_sse_when_the_client_prefers_events(accept: str, events: bool) -> None:
    assert codec.wants_events(accept) is events


def test_a_body_that_is_not_utf8_is_named_so() -> None:
    """Latin-1 text (``café`` as one byte 0xe9): orjson's message spoke of surrogates."""
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xe9 at offset 9\)"):
        codec.loads('{"a":"café"}'.encode("latin-1"))
    assert codec.loads('{"a":"café"}'.encode("utf-16")) == {"a": "café"}  # with its BOM, as json reads it


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (b"sepal_length=5.2&w=a+b", "the body is a form"),  # requests.post(url, data={...})
        (
            b'--9d2b\r\nContent-Disposition: form-data; name="f"; filename="s.json"\r\n'
            b'\r\n{"a":1}\r\n--9d2b--\r\n',
            "the body is a multipart form",  # requests' files=, curl -F
        ),
    ],
)
def test_a_form_sent_for_json_is_named_so(body: bytes, hint: str) -> None:
    with pytest.raises(InputError, match=f"^malformed JSON: .*{hint}"):
        codec.loads(body)


def test_text_with_a_lone_surrogate_is_answered_as_its_escape() -> None:
    # JSON's "\ud800" is read (Python's json, as Cortex's Flask did) into text no UTF-8 holds; an
    # answer echoing it was a 500 ("str is not valid UTF-8") where Cortex answered its escape.
    sample = json.loads('{"text": "a\\ud800b", "rows": [1, "\\udfff", {"nested": "\\ud83d"}]}')
    answer = codec.dumps_answer(sample)
    assert answer == b'{"text":"a\\ud800b","rows":[1,"\\udfff",{"nested":"\\ud83d"}]}'
    assert json.loads(answer) == sample
    assert (
        codec.dumps_answer({"text": "caf\u00e9"}) == '{"text":"caf\u00e9"}'.encode()
    )  # other text stays UTF-8


def test_a_dict_key_with_a_lone_surrogate_is_answered_as_its_escape() -> None:
    # A handler echoing its payload ({"\ud800": 1}, read as Cortex's Flask read it) was a 500:
    # the escape was written for text values only, and orjson writes no such key.
    sample = json.loads('{"a\\ud800": [1, {"\\udfff": "x", "ok": 0}], "b": 2}')
    sample["a\ud800"][1]["ok"] = np.float32(0.5)
    answer = codec.dumps_answer(sample)
    assert json.loads(answer) == {"a\ud800": [1, {"\udfff": "x", "ok": 0.5}], "b": 2}
    assert answer == b'{"a\\ud800":[1,{"\\udfff":"x","ok":0.5}],"b":2}'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[123456789012345678901234, 0.5]", [123456789012345678901234, 0.5]),
        (b'{"id":18446744073709551616}', {"id": 2**64}),
        (b"-9223372036854775809", -(2**63) - 1),
        (b"\n[1,\t99999999999999999999]", [1, 99999999999999999999]),
        (b"[1,-9223372036854775809]", [1, -(2**63) - 1]),
        (b'{"a":-18446744073709551616}', {"a": -(2**64)}),
        (b" \r\n-99999999999999999999", -99999999999999999999),
        (b"18446744073709551616", 2**64),
        # what orjson reads exactly, digits after a point among them, is its own reading
        (b"[18446744073709551615, -9223372036854775808]", [2**64 - 1, -(2**63)]),
        (
            b"[0.00012345678901234567, 1.2345678901234567890123e5]",
            [0.00012345678901234567, 123456.78901234567],
        ),
    ],
)
def test_an_integer_beyond_64_bits_is_read_as_written(body: bytes, expected: Any) -> None:
    # orjson reads it as a float (123456789012345678901234 as 1.2345678901234569e+23)
    value = codec.loads(body)
    assert repr(value) == repr(expected)  # 18446744073709551616, not 1.8446744073709552e+19


_WIDE = st.integers(min_value=2**64, max_value=10**40) | st.integers(
    min_value=-(10**40), max_value=-(2**63) - 1
)
_EDGES = st.sampled_from([2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**19, -(10**18), -(10**19)])
_TEXT = st.text(max_size=6) | st.sampled_from(["\ud800", ", 123456789012345678901", " -" * 12, "-" * 21])
_VALUES = st.recursive(
    st.none() | st.booleans() | _WIDE | _EDGES | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.lists(st.tuples(_TEXT, inner), max_size=3).map(tuple),
    max_leaves=12,
)


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    """JSON text of a generated value, with JSON's whitespace anywhere, objects with repeated
    keys, text as UTF-8 or as escapes (lone surrogates too: orjson refuses them)."""
    space = st.text(st.sampled_from(" \t\r\n"), max_size=2)

    def text(value: Any) -> str:
        if isinstance(value, tuple):  # an object, as its (key, value) pairs
            pairs = [f"{json.dumps(key)}{draw(space)}:{text(item)}" for key, item in value]
            inner = f"{draw(space)},".join(pairs)
            return f"{draw(space)}{{{draw(space)}{inner}{draw(space)}}}{draw(space)}"
        if isinstance(value, list):
            inner = f"{draw(space)},".join(text(item) for item in value)
            return f"{draw(space)}[{inner}{draw(space)}]{draw(space)}"
        return f"{draw(space)}{json.dumps(value, ensure_ascii=draw(st.booleans()))}{draw(space)}"

    return text(draw(_VALUES)).encode("utf-8", "surrogatepass")


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[key], b[key]) for key in a)
    return a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_documents())
def test_a_body_is_read_as_pythons_json_reads_it(body: bytes) -> None:
    # what Cortex's Flask read: integers beyond 64 bits as written (orjson made them floats)
    # wherever they stand, every other value as orjson reads it
    expected = json.loads(body)
    assert _same(codec.loads(body), expected), body


def test_a_memoryview_numpy_cannot_read_is_answered_as_its_bytes() -> None:
    # ctypes' pointers ('<P'): NumPy has no type for them; the 500 said the user's own encoding
    # raised ("encoding it raised ValueError: '<P' is not a valid PEP 3118 ...") though ours did
    pointers = memoryview((ctypes.c_void_p * 2)(1, 2))
    raw = pointers.tobytes()
    assert codec.dumps(pointers) == codec.dumps(raw) == orjson.dumps(raw.decode())  # UTF-8 here
    assert orjson.loads(codec.dumps(np.array([1.5, 2.5]).data)) == [1.5, 2.5]  # numbers: them
