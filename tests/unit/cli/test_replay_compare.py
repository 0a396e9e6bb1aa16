"""How replay decides that two answers agree, and its percentiles."""

from __future__ import annotations

from inferd.cli.replay import agree, percentile


def test_numbers_agree_within_the_tolerance_at_any_depth() -> None:
    assert agree({"p": [0.5, 0.25], "label": "cat"}, {"p": [0.5001, 0.25], "label": "cat"}, 1e-3)
    assert not agree({"p": [0.5, 0.25]}, {"p": [0.51, 0.25]}, 1e-3)
    assert not agree({"p": [0.5]}, {"p": [0.5, 0.1]}, 1.0)
    assert not agree({"label": "cat"}, {"label": "dog"}, 1.0)
    assert not agree({"a": 1}, {"b": 1}, 1.0)
    assert not agree(True, 1, 0.0) and agree(1, 1.0, 0.0)


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50.0, 99.0)
    assert percentile([], 0.5) is None
