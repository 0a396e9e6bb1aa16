"""How a batched prediction is checked against a sample run alone."""

from __future__ import annotations

import numpy as np

from inferd.handler.batches import same_prediction


def test_a_sample_run_alone_agrees_with_its_rows_of_the_batch_to_float_noise() -> None:
    rows = [np.array([[0.1, 0.2]], dtype=np.float32), np.array([1])]
    assert same_prediction(rows, [rows[0] * (1 + 1e-6), np.array([1])])
    assert same_prediction([{"a": 0.5, "b": 0.5}], [{"a": 0.5, "b": 0.5000001}])  # a ZipMap's rows
    assert same_prediction({"y": np.array([b"x"], dtype=object)}, {"y": np.array([b"x"], dtype=object)})


def test_another_samples_rows_or_values_that_do_not_compare_are_not_the_same() -> None:
    assert not same_prediction([np.array([[0, 0]])], [np.array([[1, 0]])])  # NonZero's indices
    assert not same_prediction([np.array([[0, 0]])], [np.array([[0, 0], [0, 1]])])
    assert not same_prediction({"y": np.array([1.0])}, {"z": np.array([1.0])})
    assert not same_prediction(np.array([1, 2]), [[1], [2, 3]])  # ragged: no error, not the same
