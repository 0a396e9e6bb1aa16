from __future__ import annotations

import pytest

from inferd.config.quantity import format_bytes, parse_quantity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("200m", 0.2),
        (0.5, 0.5),
        (2, 2.0),
        ("1", 1.0),
        ("1.5", 1.5),
        ("512Mi", 512 * 2**20),
        ("2G", 2e9),
        ("1Gi", 2**30),
        ("1e3", 1000.0),
        ("100k", 1e5),
    ],
)
def test_kubernetes_quantities(value: object, expected: float) -> None:
    assert parse_quantity(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["lots", "12X", "", "-1", True, None, "1 2"])
def test_invalid_quantities(value: object) -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(value)


def test_format_bytes() -> None:
    assert format_bytes(512 * 2**20) == "512Mi"
    assert format_bytes(2**30) == "1Gi"
