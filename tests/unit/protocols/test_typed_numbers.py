"""Number tensors on the typed protocols (V2, TF Serving): numbers only, refused with a 400 that
says what the JSON held. JSON's true and false are not numbers there (V2's BOOL is its own
datatype; TF Serving's DT_BOOL takes them), nor null or text; the Cortex route stays lax."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from inferd.errors import InputError
from inferd.protocols import tfserving, v2
from inferd.protocols.booleans import BooleansInLists
from inferd.runtimes.base import TensorSpec

FP32 = TensorSpec("x", np.dtype(np.float32), (None,), "tensor(float)")
INT64 = TensorSpec("x", np.dtype(np.int64), (None,), "tensor(int64)")
UINT64 = TensorSpec("x", np.dtype(np.uint64), (None,), "tensor(uint64)")
BOOL = TensorSpec("x", np.dtype(np.bool_), (None,), "tensor(bool)")
ROWS = TensorSpec("x", np.dtype(np.float32), (None, 2), "tensor(float)")
SPECS = {"FP32": FP32, "INT64": INT64}

REFUSED = [
    # (data, what the V2 message says, what the TF Serving message says)
    ([None, 1], "data is not {T}: null is not a number", "null is not a number"),
    ([1, "2"], '{T} data holds text ("2"), not numbers', "text is not a number ('2')"),
    ([True, False], "{T} data holds true/false, not numbers", "true/false is not a number"),
    ([True, 1.5], "{T} data holds true/false, not numbers", "true/false is not a number"),
    ([1, True], "{T} data holds true/false, not numbers", "true/false is not a number"),
    ([0.5, False], "{T} data holds true/false, not numbers", "true/false is not a number"),
    ([[1, 2], [True, 0]], "{T} data holds true/false, not numbers", "true/false is not a number"),
    ([[1, 2], [3]], "the nested lists are ragged", "the nested lists are ragged"),
]


def _v2(datatype: str, data: Any, shape: list[int], spec: TensorSpec, **request: Any) -> np.ndarray[Any, Any]:
    body = orjson.dumps(
        {**request, "inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    )
    return v2.decode_request(body, None, [spec])[1]["x"]


def _shape(data: Any) -> list[int]:
    return [len(data), len(data[0])] if isinstance(data[0], list) else [len(data)]


@pytest.mark.parametrize("datatype", ["FP32", "INT64"])
@pytest.mark.parametrize(("data", "v2_says", "tfserving_says"), REFUSED)
def test_v2_refuses_what_is_not_a_number(datatype: str, data: Any, v2_says: str, tfserving_says: str) -> None:
    shape = _shape(data)
    spec = TensorSpec("x", SPECS[datatype].dtype, (None,) * len(shape), SPECS[datatype].type_name)
    with pytest.raises(InputError) as caught:
        _v2(datatype, data, shape, spec)
    assert str(caught.value).startswith("input 'x': ")
    assert v2_says.format(T=datatype) in str(caught.value)


@pytest.mark.parametrize("spec", [FP32, INT64], ids=["float32", "int64"])
@pytest.mark.parametrize(("data", "v2_says", "tfserving_says"), REFUSED)
@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_tfserving_refuses_what_is_not_a_number(
    spec: TensorSpec, data: Any, v2_says: str, tfserving_says: str, key: str
) -> None:
    shaped = TensorSpec("x", spec.dtype, (None,) * len(_shape(data)), spec.type_name)
    with pytest.raises(InputError) as caught:
        tfserving.decode_predict(orjson.dumps({key: data}), [shaped])
    assert str(caught.value).startswith("input 'x': ")
    assert tfserving_says in str(caught.value)


def test_tfserving_refuses_true_given_as_an_instance_s_named_value() -> None:
    # the row format builds each input's column from the instances' values (after a ':')
    a = TensorSpec("a", np.dtype(np.float32), (None,), "tensor(float)")
    b = TensorSpec("b", np.dtype(np.float32), (None,), "tensor(float)")
    body = orjson.dumps({"instances": [{"a": True, "b": 1.0}, {"a": 1.5, "b": 2.0}]})
    with pytest.raises(InputError, match=r"input 'a': .*true/false is not a number"):
        tfserving.decode_predict(body, [a, b])
    examples = orjson.dumps({"context": {"a": True}, "examples": [{"b": 1.0}, {"a": 1.5, "b": 0.0}]})
    with pytest.raises(InputError, match=r"input 'a': .*true/false is not a number"):
        tfserving.decode_examples(examples, [a, b])


def test_numbers_beside_true_elsewhere_are_taken() -> None:
    # tritonclient asks for outputs with "binary_data": true; a BOOL input holds true and false
    outputs = [{"name": "y", "parameters": {"binary_data": True}}]
    taken = _v2("FP32", [1.0, 0.0, 1.0], [3], FP32, outputs=outputs, parameters={"binary_data_output": False})
    assert taken.tolist() == [1.0, 0.0, 1.0]
    flag = TensorSpec("flag", np.dtype(np.bool_), (None,), "tensor(bool)")
    body = orjson.dumps(
        {
            "inputs": [
                {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]},
                {"name": "x", "datatype": "INT64", "shape": [2], "data": [1, 0]},
            ]
        }
    )
    arrays = v2.decode_request(body, None, [flag, INT64])[1]
    assert arrays["flag"].tolist() == [True, False] and arrays["x"].tolist() == [1, 0]
    rows = tfserving.decode_predict(orjson.dumps({"instances": [{"flag": True, "x": 0}]}), [flag, INT64])[1]
    assert rows["x"].tolist() == [0] and rows["flag"].tolist() == [True]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([0, 18446744073709551615], [0, 2**64 - 1]),  # beside small ints, past int64's maximum
        ([9223372036854775808, 1], [2**63, 1]),
    ],
)
def test_uint64_past_int64_is_taken_exactly(data: list[int], expected: list[int]) -> None:
    assert _v2("UINT64", data, [2], UINT64).tolist() == expected
    assert tfserving.decode_predict(orjson.dumps({"inputs": data}), [UINT64])[1]["x"].tolist() == expected


def test_nan_and_infinity_tokens_are_numbers() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [NaN, Infinity, 0]}]}'
    array = v2.decode_request(body, None, [FP32])[1]["x"]
    assert np.isnan(array[0]) and np.isposinf(array[1]) and array[2] == 0
    array = tfserving.decode_predict(b'{"instances": [NaN, -Infinity, 1]}', [FP32])[1]["x"]
    assert np.isnan(array[0]) and np.isneginf(array[1]) and array[2] == 1


def test_empty_and_deeply_nested_data() -> None:
    assert _v2("FP32", [], [0], FP32).shape == (0,)
    assert tfserving.decode_predict(b'{"inputs": []}', [FP32])[1]["x"].shape == (0,)
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(InputError):
        tfserving.decode_predict(b'{"inputs": ' + deep + b"}", [FP32])
    with pytest.raises(InputError):
        v2.decode_request(
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + deep + b"}]}",
            None,
            [FP32],
        )


@pytest.mark.parametrize(("data", "message"), [([2, 0], "2 is not a BOOL value"), (["true"], "not text")])
def test_a_bool_tensor_takes_true_false_1_and_0_only(data: list[Any], message: str) -> None:
    assert _v2("BOOL", [True, 0, 1], [3], BOOL).tolist() == [True, False, True]
    with pytest.raises(InputError, match=message):
        _v2("BOOL", data, [len(data)], BOOL)
    with pytest.raises(InputError, match="input 'x'"):
        tfserving.decode_predict(orjson.dumps({"inputs": data}), [BOOL])


def test_a_v2_body_in_utf16_is_still_checked() -> None:
    text = '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [true, 1.5]}]}'
    # orjson refuses UTF-16; the fallback (Python's json) reads it
    with pytest.raises(InputError, match="true/false"):
        v2.decode_request(text.encode("utf-16"), None, [FP32])


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b'{"a": [1, true]}', True),
        (b'{"a": [false]}', True),
        (b'{"a": [1,\n\t false]}', True),
        (b'{"a": [1, 2], "binary_data": true}', False),
        (b'{"a": ["[true", 1]}', True),  # a string that looks like one: checked further, not trusted
        (b'{"a": [1, 2]}', False),
        ('{"a": [1, true]}'.encode("utf-16"), True),
    ],
)
def test_booleans_in_lists(text: bytes, found: bool) -> None:
    assert BooleansInLists(text)() is found


def test_a_key_value_counts_when_asked() -> None:
    assert BooleansInLists(b'{"a": true}', after=b"[,:")() is True
    assert BooleansInLists(b'{"a": true}')() is False


def test_a_ragged_batch_of_instances_is_a_400() -> None:
    with pytest.raises(InputError, match="ragged"):
        tfserving.decode_predict(b'{"instances": [[1, 2], [3]]}', [ROWS])


@pytest.mark.parametrize("padding", [b"", b"1, " * 2000, b'"name", ' * 1000])
@pytest.mark.parametrize(
    ("tail", "found"),
    [(b"[1, true]", True), (b"[1,\n false]", True), (b'{"flag": true}', False), (b"[1, 2.5e3]", False)],
)
def test_booleans_in_lists_of_a_long_text(padding: bytes, tail: bytes, found: bool) -> None:
    # a long text is searched by the literals' last letter; too many e's fall back to the literals
    text = b'{"pad": [' + padding.rstrip(b", ") + b'], "data": ' + tail + b"}"
    assert BooleansInLists(text)() is found


def test_a_v2_map_element_is_read_as_the_request_is() -> None:
    # the BYTES element holding an ONNX map's JSON was read by orjson: 18446744073709551616 was
    # named 1.8446744073709552e+19, and NaN (which the request itself may hold) was "a map input
    # takes a JSON object"
    def element(spec: TensorSpec, text: str) -> Any:
        header = orjson.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [text]}]})
        return v2.decode_request(header, None, [spec])[1]["x"].item()

    wide = TensorSpec("x", np.dtype(object), None, "map(int64,tensor(int64))")
    with pytest.raises(InputError, match=r"values: 18446744073709551616 is out of int64's range"):
        element(wide, '{"1": 18446744073709551616}')
    floats = TensorSpec("x", np.dtype(object), None, "map(string,tensor(float))")
    taken = element(floats, '{"a": NaN, "b": 2}')
    assert list(taken) == ["a", "b"] and np.isnan(taken["a"]) and taken["b"] == 2.0
