"""`inferd dashboard` opens its link in a browser where DISPLAY or WAYLAND_DISPLAY is set (README,
"Dashboard"); `--no-browser`, or no display, only prints it."""

from __future__ import annotations

import webbrowser
from typing import Any

import pytest
from click.testing import CliRunner

from inferd.cli import dashboard as command
from inferd.cli.main import cli

LINK = "http://127.0.0.1:40000/dashboard/login?token=abc"


class FakeClient:
    def dashboard_login(self) -> dict[str, Any]:
        return {"url": LINK, "expires_in": 600}


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    links: list[str] = []
    monkeypatch.setattr(command, "Client", FakeClient)
    monkeypatch.setattr(command, "_start_operator", lambda client: None)
    monkeypatch.setattr(webbrowser, "open", links.append)
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    return links


@pytest.mark.parametrize("variable", ["DISPLAY", "WAYLAND_DISPLAY"])
def test_a_display_opens_the_link(opened: list[str], monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, ":0")
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [LINK]
    assert opened == [LINK]


def test_no_browser_or_no_display_only_prints_the_link(
    opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CliRunner().invoke(cli, ["dashboard"]).stdout.splitlines() == [LINK]
    monkeypatch.setenv("DISPLAY", ":0")
    result = CliRunner().invoke(cli, ["dashboard", "--no-browser"])
    assert result.exit_code == 0 and result.stdout.splitlines() == [LINK]
    assert "the link works once, within 10 minutes" in result.stderr
    assert opened == []
