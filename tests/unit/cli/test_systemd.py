"""`inferd up --systemd`: the unit carries the operator's settings from the shell that wrote it."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from inferd.cli.home import systemd_unit


def environment(unit: str) -> list[str]:
    """The unit's ``Environment=`` settings as systemd reads their words (a path with a space, as
    under a TMPDIR that has one, is quoted), ``%%`` left as written."""
    prefix = "Environment="
    return [
        word
        for line in unit.splitlines()
        if line.startswith(prefix)
        for word in shlex.split(line[len(prefix) :])
    ]


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
    assert f"INFERD_HOME={tmp_path / 'home'}" in environment(unit)
    assert "INFERD_LOG_MAX_BYTES" not in unit  # unset: the operator's default


def test_the_unit_carries_every_setting_the_operator_reads_and_no_client_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It carried five: `INFERD_MAX_CONNECTIONS=20000 inferd up --systemd` wrote a unit without it."""
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    settings = {
        "INFERD_MAX_CONNECTIONS": "20000",
        "INFERD_HEADER_TIMEOUT": "5",
        "INFERD_DASHBOARD_PORT": "9001",
        "INFERD_S3_TIMEOUT": "20",
        "INFERD_SHADOW_NICE": "0",
        "INFERD_SHARE_WEIGHTS": "0",
        "INFERD_ZYGOTE": "0",
        "INFERD_PIPELINE_BELOW_MS": "0.5",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INFERD_API_KEY", "a-client-key")  # `inferd predict`'s, never the operator's
    unit = systemd_unit()
    for name, value in settings.items():
        assert f"Environment={name}={value}" in unit
    assert "a-client-key" not in unit


def test_a_percent_sign_in_a_setting_reaches_the_operator_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: `Environment=INFERD_HOME=/data/100%home` unescaped: systemd reads `%h` as the user's
    # home folder, so the unit's operator used another INFERD_HOME than the shell that wrote it.
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "100%home"))
    unit = systemd_unit()
    assert f"INFERD_HOME={tmp_path / '100%%home'}" in environment(unit)
    assert "%h" not in unit.replace("%%", "")


def test_the_units_operator_never_imports_a_stray_module_of_its_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user unit runs in the user's home: `python -m` put that folder first on sys.path, so an
    `inferd/` (or `json.py`, `typing.py`) lying there was the operator's own code. `inferd up` and
    `inferd deploy` start it with `python -P`; so does the unit."""
    stray = tmp_path / "inferd" / "operator"
    stray.mkdir(parents=True)
    (tmp_path / "inferd" / "__init__.py").write_text("")
    (stray / "__init__.py").write_text("")
    (stray / "daemon.py").write_text("print('the stray module ran')\n")
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    (tmp_path / "home").write_text("a file where the home goes: the real operator stops at once")
    command = next(line for line in systemd_unit().splitlines() if line.startswith("ExecStart="))
    done = subprocess.run(
        shlex.split(command.removeprefix("ExecStart=")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "the stray module ran" not in done.stdout
    assert done.returncode != 0 and "home" in done.stderr  # the real operator, refusing that home
