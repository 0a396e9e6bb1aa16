"""A port out of range or not a number: a usage error before anything listens (was: 99999 served
on 34463, 99999 - 65536, and INFERD_PORT=abc was a traceback)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli
from inferd.operator import daemon


@pytest.mark.parametrize("port", ["99999", "-1", "abc"])
def test_serve_refuses_a_port_that_is_not_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--port", port])
    assert result.exit_code == 2
    assert result.output.startswith("error: Invalid value for '--port'")
    assert result.output.count("\n") == 1


def test_serve_refuses_an_inferd_port_that_is_not_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INFERD_PORT", "abc")
    result = CliRunner().invoke(cli, ["serve", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: Invalid value for '--port'")
    assert "INFERD_PORT" in result.output


@pytest.mark.parametrize("port", ["99999", "abc"])
def test_the_operator_refuses_an_inferd_port_that_is_not_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, port: str
) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INFERD_PORT", port)
    with caplog.at_level(logging.ERROR):
        assert daemon.main() == 2
    assert f"INFERD_PORT {port!r} must be a port number from 0 to 65535" in caplog.text
