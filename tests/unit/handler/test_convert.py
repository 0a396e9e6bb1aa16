"""Fitting JSON values to model inputs: dtype casts, batch dims, several inputs, clear errors."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import orjson
import pytest

from inferd.errors import InputError
from inferd.handler.convert import check_dimension_names, dimension_groups, to_array, to_model_inputs
from inferd.runtimes.base import TensorSpec

FLOAT_ROWS = TensorSpec("input", np.dtype(np.float32), (None, 4), "tensor(float)")
FIXED = TensorSpec("input", np.dtype(np.float32), (1, 4), "tensor(float)")
IDS = TensorSpec("ids", np.dtype(np.int64), (None,), "tensor(int64)")
TEXT = TensorSpec("text", np.dtype(object), (None,), "tensor(string)")
A = TensorSpec("a", np.dtype(np.float32), (None, 2), "tensor(float)")
B = TensorSpec("b", np.dtype(np.float32), (None, 2), "tensor(float)")


def test_flat_list_gets_the_missing_batch_dimension() -> None:
    array = to_array([5.2, 3.6, 1.4, 0.3], FLOAT_ROWS)
    assert array.shape == (1, 4)
    assert array.dtype == np.float32


def test_dynamic_batch_dimension_takes_any_number_of_rows() -> None:
    rows = [[5.2, 3.6, 1.4, 0.3]] * 6
    assert to_array(rows, FLOAT_ROWS).shape == (6, 4)


def test_fixed_shape_is_reshaped_when_the_size_fits() -> None:
    assert to_array([1, 2, 3, 4], FIXED).shape == (1, 4)


def test_ints_are_cast_to_the_signature_dtype() -> None:
    array = to_array([[1, 2, 3, 4]], FLOAT_ROWS)
    assert array.dtype == np.float32
    assert to_array([1.0, 2.0], IDS).dtype == np.int64


def test_ndarray_is_cast() -> None:
    array = to_array(np.ones((2, 4), dtype=np.float64), FLOAT_ROWS)
    assert array.dtype == np.float32 and array.shape == (2, 4)


def test_scalar_for_a_vector_input_becomes_a_batch_of_one() -> None:
    assert to_array(7, IDS).tolist() == [7]


def test_strings_for_a_string_input() -> None:
    array = to_array(["a", "b"], TEXT)
    assert array.dtype == object and array.tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([[1, 2, 3]], r"input 'input': expected shape \[-1, 4\] \(float32\), got shape \[1, 3\]"),
        ([1, 2, 3, 4, 5], r"expected shape \[-1, 4\]"),
        ([[1, 2], [3, 4]], r"input 'input': expected shape \[-1, 4\] \(float32\), got shape \[2, 2\]"),
        ([1, 2, 3, 4, 5, 6, 7, 8], r"input 'input': expected shape \[-1, 4\] \(float32\), got shape \[8\]"),
        ([[[1, 2], [3, 4]]], r"got shape \[1, 2, 2\]"),
        ([["a", "b", "c", "d"]], r"input 'input': expected float32 \[-1, 4\] values"),
        ([[1, 2], [3]], r"ragged"),
        (None, r"input 'input': expected float32 \[-1, 4\], got null"),
        ([{"x": 1}] * 4, r"input 'input': expected float32"),
    ],
)
def test_values_that_do_not_fit_are_input_errors(value: Any, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        to_array(value, FLOAT_ROWS)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ([None], "got null where a string belongs"),
        (["a", 1], r"got a number \(1\) where a string belongs"),
        ([True], "got true or false where a string belongs"),
        ([{"text": "a"}], "got an object where a string belongs"),
        ([["a"], ["b", "c"]], "the nested lists are ragged"),
    ],
)
def test_only_strings_reach_a_string_input(value: Any, says: str) -> None:
    # They were handed to the model as they were: a null became the text "None".
    with pytest.raises(InputError, match=f"input 'text': expected string .* values: {says}"):
        to_array(value, TEXT)


def test_numeric_ndarray_for_a_string_input_is_refused() -> None:
    with pytest.raises(InputError, match="cannot cast"):
        to_array(np.ones(2), TEXT)


def test_single_input_shortcut_and_dict_by_name() -> None:
    assert set(to_model_inputs([1, 2, 3, 4], [FLOAT_ROWS])) == {"input"}
    assert to_model_inputs({"input": [1, 2, 3, 4]}, [FLOAT_ROWS])["input"].shape == (1, 4)


def test_several_inputs_by_name() -> None:
    inputs = to_model_inputs({"a": [1, 2], "b": [[3, 4], [5, 6]]}, [A, B])
    assert inputs["a"].shape == (1, 2) and inputs["b"].shape == (2, 2)


def test_several_inputs_need_a_dict() -> None:
    with pytest.raises(InputError, match="several inputs: expected an object with the keys 'a', 'b'"):
        to_model_inputs([1, 2], [A, B])


def test_missing_and_unexpected_inputs_are_named() -> None:
    with pytest.raises(InputError, match="missing input 'b'"):
        to_model_inputs({"a": [1, 2]}, [A, B])
    with pytest.raises(InputError, match="unexpected input 'c'"):
        to_model_inputs({"a": [1, 2], "b": [1, 2], "c": 1}, [A, B])
    with pytest.raises(InputError, match="missing input 'input'"):
        to_model_inputs({"features": [1, 2, 3, 4]}, [FLOAT_ROWS])


def test_a_missing_input_names_the_keys_given_instead() -> None:
    """pre_inference returned {"images": ...} for an ONNX input 'image': the 400 said only
    "missing input 'image'", not the key it got instead."""
    with pytest.raises(InputError) as one:
        to_model_inputs({"images": [1, 2, 3, 4]}, [FLOAT_ROWS])
    assert str(one.value) == (
        "missing input 'input' (expected a value of float32 [-1, 4], or an object with the key "
        "'input'): got the key 'images', which is not an input"
    )
    with pytest.raises(InputError) as several:
        to_model_inputs({"a": [1, 2], "c": [1, 2]}, [A, B])
    assert str(several.value) == (
        "missing input 'b': expected an object with the keys 'a', 'b': got the key 'c', which is not an input"
    )
    many = {f"k{i}": 1 for i in range(30)}
    with pytest.raises(InputError) as lots:
        to_model_inputs(many, [A, B])
    assert str(lots.value).endswith(
        "got the keys 'k0', 'k1', 'k2', 'k3', 'k4' and 25 more, which are not inputs"
    )


def test_extra_keys_are_ignored_when_asked_as_cortex_did_for_onnx() -> None:
    inputs = to_model_inputs({"a": [1, 2], "b": [1, 2], "label": "x"}, [A, B], ignore_extra=True)
    assert set(inputs) == {"a", "b"}
    single = to_model_inputs({"input": [1, 2, 3, 4], "id": 7}, [FLOAT_ROWS], ignore_extra=True)
    assert single["input"].shape == (1, 4)


def test_numbers_out_of_the_dtype_range_are_refused_not_made_infinite() -> None:
    # Found by the property test: 1e300 silently became inf in a float32 input.
    with pytest.raises(
        InputError, match=r"1e\+300 is out of float32's range \(-3.4028235e\+38 to 3.4028235e\+38\)"
    ):
        to_array([[1e300, 1, 2, 3]], FLOAT_ROWS)
    with pytest.raises(InputError, match="input 'ids'"):
        to_array([2**70], IDS)


INT64_RANGE = r"int64's range \(-9223372036854775808 to 9223372036854775807\)"


@pytest.mark.parametrize(
    ("body", "dtype", "message"),
    [
        (b"[9223372036854775808]", np.int64, r"9223372036854775808 is out of " + INT64_RANGE),
        # orjson reads an integer beyond 64 bits as a float: this one rounded to -2**63, which fits
        (b"[1, -9223372036854775809]", np.int64, r"-9.223372036854776e\+18 is out of " + INT64_RANGE),
        (b"[1180591620717411303424]", np.int64, r"1.1805916207174113e\+21 is out of " + INT64_RANGE),
        (b"[2147483648]", np.int32, r"2147483648 is out of int32's range \(-2147483648 to 2147483647\)"),
        (b"[300]", np.uint8, r"300 is out of uint8's range \(0 to 255\)"),
        # many values (numpy finds the extremes) and a few (Python does): the same answer
        (orjson.dumps([[*range(200), -1]]), np.uint8, r"-1 is out of uint8's range \(0 to 255\)"),
        (orjson.dumps([[[1, 2], [3, 2**31]]]), np.int32, r"2147483648 is out of int32's range"),
        (b"[-1.0]", np.uint8, r"-1.0 is out of uint8's range \(0 to 255\)"),
        (b"[18446744073709551616]", np.uint64, r"out of uint64's range \(0 to 18446744073709551615\)"),
        (b"[1, 1.5]", np.int64, r"1.5 is not a whole number, as int64 needs"),
        (b"[9007199254740994.0]", np.int64, r"not exact as int64"),
        (b"[70000]", np.float16, r"70000 is out of float16's range"),
    ],
)
def test_a_number_the_input_cannot_hold_exactly_is_refused_with_its_range(
    body: bytes, dtype: type[np.generic], message: str
) -> None:
    spec = TensorSpec("x", np.dtype(dtype), (None,), "t")
    with pytest.raises(InputError, match=r"input 'x': .*" + message):
        to_array(orjson.loads(body), spec)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[true, 2]", r"input 'x': .*2 is not a bool value \(true, false, 1 or 0\)"),
        (b"[0.5]", r"input 'x': .*0.5 is not a bool value"),
        (b'["false"]', r"input 'x': .*bool takes true, false, 1 or 0, not text"),
        (b"[true, null]", r"input 'x': .*bool takes true, false, 1 or 0, not null or objects"),
    ],
)
def test_only_true_false_1_and_0_reach_a_bool_input(body: bytes, message: str) -> None:
    # numpy alone would make each of these True, the text "false" too
    spec = TensorSpec("x", np.dtype(np.bool_), (None,), "tensor(bool)")
    with pytest.raises(InputError, match=message):
        to_array(orjson.loads(body), spec)
    exact = to_array(orjson.loads(b"[true, false, 1, 0, 1.0]"), spec)
    assert exact.tolist() == [True, False, True, False, True]


def test_an_integer_beyond_64_bits_for_a_bool_input_is_named() -> None:
    # it was "bool takes true, false, 1 or 0, not null or objects"
    spec = TensorSpec("x", np.dtype(np.bool_), (None,), "tensor(bool)")
    with pytest.raises(InputError, match=r"input 'x': .*18446744073709551616 is not a bool value"):
        to_array(json.loads("[1, 18446744073709551616]"), spec)


def test_lists_nested_deeper_than_an_array_goes_are_named_so_not_ragged() -> None:
    # numpy refuses more dimensions than it has (64; 32 before numpy 2): that was "the nested
    # lists are ragged (rows of different lengths)", which they were not (found by fuzzing)
    nested: Any = 1.0
    for _ in range(70):
        nested = [nested]
    for shape in (None, (None,)):
        with pytest.raises(
            InputError, match=r"input 'x': .*the lists are nested more than \d+ deep"
        ) as caught:
            to_array(nested, TensorSpec("x", np.dtype(np.float32), shape, "t"))
        assert "ragged" not in str(caught.value)


def test_numbers_the_input_holds_are_kept_exactly() -> None:
    spec = TensorSpec("x", np.dtype(np.int64), (None,), "t")
    edges = [-(2**63), 2**63 - 1, 2**53, 3]
    assert to_array(orjson.loads(orjson.dumps(edges)), spec).tolist() == edges
    assert to_array([1.0, 2.0, True], spec).tolist() == [1, 2, 1]
    unsigned = TensorSpec("x", np.dtype(np.uint64), (None,), "t")
    assert to_array(orjson.loads(b"[18446744073709551615]"), unsigned).tolist() == [2**64 - 1]
    wide = TensorSpec("x", np.dtype(np.float64), (None,), "t")
    assert to_array(orjson.loads(b"[1180591620717411303424]"), wide).tolist() == [2.0**70]


def test_a_handler_array_the_input_cannot_hold_is_refused_not_wrapped() -> None:
    with pytest.raises(InputError, match=r"300 is out of uint8's range"):
        to_array(np.array([300]), TensorSpec("x", np.dtype(np.uint8), (None,), "t"))


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1j, 2, 3, 4]]),
        np.array([["2020-01-01"] * 4], dtype="datetime64[D]"),
        np.ones((1, 4), "m8[s]"),
    ],
)
def test_a_handler_array_of_complex_or_dates_is_refused_not_made_numbers(array: Any) -> None:
    # astype dropped the imaginary part (1j reached the model as 0.0) or made a date its days
    with pytest.raises(InputError, match=re.escape(f"cannot cast {array.dtype} values to float32")):
        to_array(array, FLOAT_ROWS)


@pytest.mark.parametrize(
    ("shape", "value", "fitted"),
    [
        ((None, 1), 2.5, (1, 1)),  # one feature: Cortex's reshape took the bare number
        ((None, 28, 28, 1), np.zeros((28, 28)), (1, 28, 28, 1)),  # an image without its channel
        ((1, 1, 4), [1, 2, 3, 4], (1, 1, 4)),
        ((None, 2, 2, 1), [[1, 2], [3, 4]], (1, 2, 2, 1)),
    ],
)
def test_size_one_dimensions_are_added_where_they_fit_one_way(
    shape: tuple[int | None, ...], value: Any, fitted: tuple[int, ...]
) -> None:
    array = to_array(value, TensorSpec("x", np.dtype(np.float32), shape, "tensor(float)"))
    assert array.shape == fitted
    assert array.ravel().tolist() == np.asarray(value, dtype=np.float32).ravel().tolist()


def test_size_one_dimensions_that_fit_two_ways_are_refused() -> None:
    # [2] for [-1, 1, -1] could be (1, 1, 2) or (2, 1, 1): a guess, so a 400
    spec = TensorSpec("x", np.dtype(np.float32), (None, 1, None), "tensor(float)")
    with pytest.raises(InputError, match=r"expected shape \[-1, 1, -1\] \(float32\), got shape \[2\]"):
        to_array([1, 2], spec)


@pytest.mark.parametrize(
    ("shape", "value", "fitted"),
    [
        ((None, 2), [[[1.5, 0]]], (1, 2)),  # a row wrapped once more: Cortex's reshape took it
        ((1, 4), [[[1, 2, 3, 4]]], (1, 4)),
        ((None, 2, 2), [[[[1], [2]], [[3], [4]]]], (1, 2, 2)),  # an image with a channel the model lacks
        ((None,), [["a"], ["b"]], (2,)),
    ],
)
def test_extra_size_one_dimensions_are_dropped_where_that_fits_one_way(
    shape: tuple[int | None, ...], value: Any, fitted: tuple[int, ...]
) -> None:
    # onnx_serve/api.py:123 (Cortex v0.10.3) reshaped every value to the signature's shape, so
    # [[[1.5, 0]]] reached a [-1, 2] input as [[1.5, 0]]; dropping size-1 dimensions, like adding
    # them, never moves a value.
    kind = (
        (np.dtype(object), "tensor(string)") if isinstance(value[0][0], str) else (np.dtype(np.float32), "f")
    )
    array = to_array(value, TensorSpec("x", kind[0], shape, kind[1]))
    assert array.shape == fitted
    assert array.ravel().tolist() == np.asarray(value, dtype=kind[0]).ravel().tolist()


def test_extra_size_one_dimensions_that_drop_two_ways_are_refused() -> None:
    spec = TensorSpec("x", np.dtype(np.float32), (None, None, None), "tensor(float)")
    with pytest.raises(
        InputError, match=r"expected shape \[-1, -1, -1\] \(float32\), got shape \[1, 2, 1, 3\]"
    ):
        to_array(np.zeros((1, 2, 1, 3)), spec)
    with pytest.raises(InputError, match=r"got shape \[2, 1\]"):  # a column for a row: a guess
        to_array([[1.5], [0]], TensorSpec("x", np.dtype(np.float32), (None, 2), "tensor(float)"))


def test_dimensions_named_alike_are_checked_once_per_shared_name() -> None:
    # Only a name that stands in more than one place can disagree: the check reads those places
    # (prepared once per model), not every named dimension of every input at each request.
    specs = [
        TensorSpec("a", np.dtype("float32"), (None, 2), "tensor(float)", dim_names=("n", "width")),
        TensorSpec("b", np.dtype("float32"), (None, None), "tensor(float)", dim_names=("n", "k")),
        TensorSpec("c", np.dtype("float32"), (None,), "tensor(float)", dim_names=("k",)),
        TensorSpec("d", np.dtype("float32"), (3,), "tensor(float)", dim_names=(None,)),
    ]
    groups = dimension_groups(specs)
    assert groups == (("n", (("a", 2, 0), ("b", 2, 0))), ("k", (("b", 2, 1), ("c", 1, 0))))
    assert dimension_groups(specs[:1]) == ()
    arrays = {"a": np.zeros((2, 2)), "b": np.zeros((2, 5)), "c": np.zeros(5), "d": np.zeros(3)}
    check_dimension_names(arrays, groups)  # n = 2 and k = 5 throughout
    check_dimension_names({**arrays, "c": np.zeros((1, 4))}, groups)  # a rank the model does not have
    with pytest.raises(InputError, match="input 'c': dimension 'k' is 4, but input 'b' has it 5"):
        check_dimension_names({**arrays, "c": np.zeros(4)}, groups)
    with pytest.raises(InputError, match="input 'b': dimension 'n' is 3, but input 'a' has it 2"):
        check_dimension_names({**arrays, "b": np.zeros((3, 5))}, groups)
