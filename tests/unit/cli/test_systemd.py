"""`inferd up --systemd`: the unit carries the operator's settings from the shell that wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.cli.home import systemd_unit


def test_the_unit_carries_the_operator_settings_that_are_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INFERD_CPUS", "16")
    monkeypatch.setenv("INFERD_PORT", "9000")
    monkeypatch.delenv("INFERD_LOG_MAX_BYTES", raising=False)
    unit = systemd_unit()
    assert "Environment=INFERD_CPUS=16" in unit
    assert "Environment=INFERD_PORT=9000" in unit
    assert f"Environment=INFERD_HOME={tmp_path / 'home'}" in unit
    assert "INFERD_LOG_MAX_BYTES" not in unit  # unset: the operator's default
