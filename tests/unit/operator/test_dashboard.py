"""The dashboard's small pure helpers: log tails, listener settings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from inferd.errors import InferdError
from inferd.operator.dashboard import LOG_LINE_CHARS, dashboard_port, host_name, is_loopback, sample_period
from inferd.operator.logs import recent_lines
from tests.conftest import calls_made, suspended


def test_recent_lines_merge_output_and_access_lines_by_time(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    assert recent_lines(tmp_path, "api", 50) == []  # no log yet
    logs.mkdir()
    (logs / "api.log").write_text(
        "2026-11-29 08:00:00 api [inferd] version v1 created\n"
        "2026-11-29 08:00:05 api [api-1] ERROR prediction failed\nTraceback (most recent call last):\n"
    )
    five = time.mktime(time.strptime("2026-11-29 08:00:05", "%Y-%m-%d %H:%M:%S"))
    (logs / "api.access.log").write_text(
        f'{{"time":{five - 3},"status":200}}\n{{"time":{five + 0.5},"status":500}}\n'
    )
    assert recent_lines(tmp_path, "api", 50) == [
        "2026-11-29 08:00:00 api [inferd] version v1 created",
        f'{{"time":{five - 3},"status":200}}',
        "2026-11-29 08:00:05 api [api-1] ERROR prediction failed",
        "Traceback (most recent call last):",
        f'{{"time":{five + 0.5},"status":500}}',
    ]
    assert len(recent_lines(tmp_path, "api", 2)) == 2
    (logs / "api.log").write_text("y" * 5000 + "\n")
    assert recent_lines(tmp_path, "api", 1, LOG_LINE_CHARS) == [f'{{"time":{five + 0.5},"status":500}}']


def test_recent_lines_after_the_clock_was_set_back_end_with_the_newest(tmp_path: Path) -> None:
    # An admin (or NTP) set the clock back an hour: the replica's crash is stamped 08:00:30, before
    # the lines of the hour before. It sorted among them and out of the last lines: the dashboard
    # showed the old requests and hid the error. A log's lines stay in the order they were written.
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "api.log").write_text(
        "2026-11-29 09:00:00 api [inferd] version v1 created\n"
        "2026-11-29 09:00:10 api [inferd] api-1 ready\n"
        "2026-11-29 08:00:30 api [api-1] ERROR replica crashed\n"
    )
    nine = time.mktime(time.strptime("2026-11-29 09:00:00", "%Y-%m-%d %H:%M:%S"))
    (logs / "api.access.log").write_text(
        "".join(f'{{"time":{nine + s},"status":200}}\n' for s in range(1, 10))
    )
    shown = recent_lines(tmp_path, "api", 3)
    assert shown[-1] == "2026-11-29 08:00:30 api [api-1] ERROR replica crashed"
    assert shown[:2] == [
        f'{{"time":{nine + 9},"status":200}}',
        "2026-11-29 09:00:10 api [inferd] api-1 ready",
    ]


def test_the_charts_keep_the_time_of_the_samples_taken_before_a_suspended_night(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The laptop slept 8 hours: the wall clock went on (it was right), the monotonic clock stopped.
    # Read as a wall clock jump, the evening's samples were moved 8 hours on and drawn as the
    # morning's last minutes. Its boot clock counts the night: nothing jumped.
    from types import SimpleNamespace
    from typing import cast

    from inferd.operator.dashboard import Dashboard
    from inferd.operator.server import Operator

    info = {"requested": 1, "available": 1, "up_to_date": 1, "failed": 0}
    operator = SimpleNamespace(
        engine=SimpleNamespace(apis={"d/a": None}, describe=lambda name: info),
        gateway=SimpleNamespace(apis={}),
    )
    dashboard = Dashboard(cast(Operator, operator))
    try:
        dashboard.sample()
        (evening,) = dashboard.history.columns("d/a")["t"]
        night = 8 * 3600.0
        suspended(monkeypatch, night)
        dashboard.sample()
        columns = dashboard.history.columns("d/a")
        assert columns["t"][0] == evening
        assert columns["seconds"][1] >= night
    finally:
        dashboard._reader.shutdown()


def test_listener_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")
    names = [
        b"127.0.0.1:80",
        b"[::1]:8080",
        b"LocalHost",
        b"[::1]",
        b"evil.example:1",
        b"127.0.0.1.evil.example",
    ]
    assert [host_name(name) for name in names] == [
        "127.0.0.1",
        "::1",
        "localhost",
        "::1",
        "evil.example",
        "127.0.0.1.evil.example",
    ]
    monkeypatch.delenv("INFERD_DASHBOARD_PORT", raising=False)
    assert dashboard_port() == 0
    monkeypatch.setenv("INFERD_DASHBOARD_PORT", "9123")
    assert dashboard_port() == 9123
    monkeypatch.setenv("INFERD_DASHBOARD_PORT", "http")
    with pytest.raises(InferdError, match="INFERD_DASHBOARD_PORT"):
        dashboard_port()
    monkeypatch.setenv("INFERD_DASHBOARD_SAMPLE_SECONDS", "0.5")
    assert sample_period() == 0.5
    for value in ("", "0", "-1", "soon"):
        monkeypatch.setenv("INFERD_DASHBOARD_SAMPLE_SECONDS", value)
        assert sample_period() == 5.0


def test_the_overview_costs_the_same_per_api_however_many_there_are() -> None:
    # Each API's entry asked every other API whether it shares its name: with 138 APIs an
    # overview took 140-240 ms of the event loop that also runs the gateway.
    from types import SimpleNamespace
    from typing import Any, cast

    from inferd.operator.dashboard import Dashboard
    from inferd.operator.overview import overview
    from inferd.operator.server import Operator

    def stub(apis: int) -> Operator:
        keys = [f"d{i % 3}/a{i}" for i in range(apis)] + ["d1/same", "d2/same"]
        return cast(
            Operator,
            SimpleNamespace(
                engine=SimpleNamespace(
                    apis={key: SimpleNamespace(config=SimpleNamespace(name=key[3:])) for key in keys}
                ),
                gateway=SimpleNamespace(splitters=SimpleNamespace(describe=list)),
                gateway_url="http://127.0.0.1:8888",
                started=0.0,
                api_info=lambda key: {"key": key, "name": key[3:], "url": "http://127.0.0.1:8888/" + key},
            ),
        )

    def cost(apis: int) -> tuple[int, dict[str, Any]]:
        dashboard = Dashboard(stub(apis))
        try:
            return calls_made(lambda: overview(dashboard.operator, dashboard.history))
        finally:
            dashboard._reader.shutdown()

    small, page = cost(40)
    assert [api["name"] for api in page["apis"] if "same" in api["name"]] == ["d1/same", "d2/same"]
    assert page["apis"][0]["name"] == "a0"  # unique: the bare name
    large, _ = cost(160)
    assert large < 5 * small, (small, large)  # four times the APIs: four times the work


def test_logs_that_did_not_change_are_not_read_again_at_each_refresh(tmp_path: Path) -> None:
    # Every refresh of an open page read and parsed the last 50 lines of every API's two logs
    # (a time parsed per line): 191 idle APIs cost 41 ms of CPU each 2.5 s, 2 ms now.
    from types import SimpleNamespace
    from typing import cast

    from inferd.operator.dashboard import Dashboard
    from inferd.operator.server import Operator

    keys = [f"d/a{i}" for i in range(20)]
    (tmp_path / "logs" / "d").mkdir(parents=True)
    for key in keys:
        lines = "".join(f"2026-11-29 08:00:{i:02d} {key} [a-1] line {i}\n" for i in range(60))
        (tmp_path / "logs" / f"{key}.log").write_text(lines)
    dashboard = Dashboard(cast(Operator, SimpleNamespace(home=tmp_path)))
    try:
        first = dashboard._read_files(keys)
        assert first["d/a3"][0][-1] == "2026-11-29 08:00:59 d/a3 [a-1] line 59"
        calls, again = calls_made(lambda: dashboard._read_files(keys))
        assert again == first
        assert calls / len(keys) < 60, calls / len(keys)  # a few stats an API (over 2,000 calls)
        # a line written since is in the next read, of that API alone
        with (tmp_path / "logs" / "d/a3.log").open("a") as log:
            log.write("2026-11-29 08:01:00 d/a3 [a-1] new\n")
        later = dashboard._read_files(keys)
        assert later["d/a3"][0][-1] == "2026-11-29 08:01:00 d/a3 [a-1] new"
        assert later["d/a4"] == first["d/a4"]
    finally:
        dashboard._reader.shutdown()
