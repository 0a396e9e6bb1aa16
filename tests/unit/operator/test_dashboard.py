"""The dashboard's small pure helpers: log tails, listener settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.errors import InferdError
from inferd.operator.dashboard import LOG_LINE_CHARS, dashboard_port, is_loopback, sample_period, tail_lines


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    assert tail_lines(log, 50) == []  # no log yet
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    assert tail_lines(log, 3) == ["line 197", "line 198", "line 199"]
    log.write_text("x" * 100_000 + "\nshort\n" + "y" * 5000 + "\n")
    assert tail_lines(log, 50) == ["short", "y" * LOG_LINE_CHARS]  # the cut first line is dropped


def test_listener_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")
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
