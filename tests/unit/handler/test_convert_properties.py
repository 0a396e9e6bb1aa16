"""Property tests of input conversion: any JSON value either fits the signature or is a 400."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inferd.errors import InputError
from inferd.handler.convert import to_model_inputs
from inferd.runtimes.base import TensorSpec

SPECS = [
    [TensorSpec("input", np.dtype(np.float32), (None, 4), "tensor(float)")],
    [TensorSpec("ids", np.dtype(np.int64), (None,), "tensor(int64)")],
    [TensorSpec("text", np.dtype(object), (None, 2), "tensor(string)")],
    [
        TensorSpec("a", np.dtype(np.float32), (None, 2), "tensor(float)"),
        TensorSpec("b", np.dtype(np.uint8), (2,), "tensor(uint8)"),
    ],
    [TensorSpec("any", np.dtype(np.float64), None, "DT_DOUBLE")],
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.sampled_from(["input", "a", "b", "x"]), inner, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, which=st.integers(min_value=0, max_value=len(SPECS) - 1))
def test_any_json_fits_or_is_an_input_error(value: Any, which: int) -> None:
    specs = SPECS[which]
    try:
        arrays = to_model_inputs(value, specs)
    except InputError as exc:
        assert exc.status_code == 400 and exc.message
        return
    assert set(arrays) == {spec.name for spec in specs}
    for spec in specs:
        array = arrays[spec.name]
        assert array.dtype == spec.dtype
        if spec.shape is not None:
            assert array.ndim == len(spec.shape)
            assert all(d is None or d == s for s, d in zip(array.shape, spec.shape, strict=True))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=4, max_size=4), min_size=1, max_size=20
    )
)
def test_batches_of_rows_keep_their_values(rows: list[list[float]]) -> None:
    array = to_model_inputs(rows, SPECS[0])["input"]
    assert array.shape == (len(rows), 4)
    assert np.allclose(array, np.array(rows, dtype=np.float32))
