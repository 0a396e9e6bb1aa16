"""`inferd logs --since`: the forms README's "Running for months" lists (30s, 2h, 1d, 1h30m, 08:00,
a local time)."""

from __future__ import annotations

from datetime import datetime

import pytest

from inferd.cli.logs import parse_since
from inferd.errors import UsageError

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("30s", 30),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5h", 5400),
        ("1h30m", 5400),
        ("1d2h", 93600),
    ],
)
def test_a_duration_counts_back_from_now(text: str, back: float) -> None:
    assert parse_since(text, now=NOW) == NOW - back


@pytest.mark.parametrize("text", ["2026-11-29 08:00", "2026-11-29T08:00:00"])
def test_a_local_time_is_that_time(text: str) -> None:
    assert parse_since(text, now=NOW) == datetime(2026, 11, 29, 8, 0).timestamp()


def test_a_time_of_day_is_its_last_time() -> None:
    # Was refused ("must be a duration ... or a time"), though --help said "a local time".
    now = datetime(2026, 11, 29, 14, 30).timestamp()
    assert parse_since("08:00", now=now) == datetime(2026, 11, 29, 8, 0).timestamp()
    assert parse_since("8:05:30", now=now) == datetime(2026, 11, 29, 8, 5, 30).timestamp()
    # still to come today: yesterday's
    assert parse_since("23:15", now=now) == datetime(2026, 11, 28, 23, 15).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "25:00", "1h30", "h", "08:00pm"])
def test_anything_else_is_a_usage_error_naming_the_forms(text: str) -> None:
    with pytest.raises(UsageError, match=r"must be a duration \(30s, 10m, 2h, 1d, 1h30m\) or a time \(08:00"):
        parse_since(text, now=NOW)
