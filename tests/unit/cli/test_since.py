"""`inferd logs --since`: the forms README's "Running for months" lists (30s, 2h, 1d, a local time)."""

from __future__ import annotations

from datetime import datetime

import pytest

from inferd.cli.logs import parse_since
from inferd.errors import UsageError

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "back"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)],
)
def test_a_duration_counts_back_from_now(text: str, back: float) -> None:
    assert parse_since(text, now=NOW) == NOW - back


@pytest.mark.parametrize("text", ["2026-11-29 08:00", "2026-11-29T08:00:00"])
def test_a_local_time_is_that_time(text: str) -> None:
    assert parse_since(text, now=NOW) == datetime(2026, 11, 29, 8, 0).timestamp()


def test_anything_else_is_a_usage_error_naming_the_forms() -> None:
    with pytest.raises(UsageError, match=r"must be a duration \(30s, 10m, 2h, 1d\) or a time"):
        parse_since("yesterday", now=NOW)
