"""`inferd logs --since`: the forms README's "Running for months" lists (30s, 2h, 1d, 1h30m, 08:00,
a local time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time with daylight saving (a POSIX rule: no tz database needed)."""
    monkeypatch.setenv("TZ", "EST5EDT,M3.2.0,M11.1.0")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_time_of_day_is_its_last_time_when_the_clocks_change(new_york: None) -> None:
    # 2026-11-01: at 02:00 EDT the clocks go back to 01:00 EST, so 01:00-02:00 comes twice.
    # At the second 01:30, "01:15" was 15 minutes ago (it gave the first, 75 minutes ago) and
    # "01:45" 45 minutes ago (it gave the day before's, a day more of lines).
    now = datetime(2026, 11, 1, 1, 30, fold=1).timestamp()
    assert parse_since("01:15", now=now) == now - 15 * 60
    assert parse_since("01:45", now=now) == now - 45 * 60
    # 2026-03-08: at 02:00 EST the clocks go on to 03:00 EDT, so no 02:30 came today. At 03:10,
    # the last 02:30 was the day before's (it gave 03:30, still to come: no line at all).
    now = datetime(2026, 3, 8, 3, 10).timestamp()
    assert parse_since("02:30", now=now) == datetime(2026, 3, 7, 2, 30).timestamp()
    assert parse_since("03:05", now=now) == now - 5 * 60
