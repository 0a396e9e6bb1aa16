"""An INFERD_HOME that cannot be written: one sentence that names it and says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli


def test_a_home_that_is_a_file_is_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: "error: File exists (/tmp/x)", which says neither INFERD_HOME nor what to do
    home = tmp_path / "home"
    home.write_text("mine\n")
    monkeypatch.setenv("INFERD_HOME", str(home))
    result = CliRunner().invoke(
        cli, ["env", "add", "lab", "--provider", "ray", "--address", "127.0.0.1:6379"]
    )
    assert result.exit_code == 1
    assert result.output == (
        f"error: INFERD_HOME {home} is not a folder (File exists): "
        "set INFERD_HOME to a folder you can write\n"
    )
    assert home.read_text() == "mine\n"


def test_a_home_under_a_file_is_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"
    monkeypatch.setenv("INFERD_HOME", str(home))
    result = CliRunner().invoke(
        cli, ["env", "add", "lab", "--provider", "ray", "--address", "127.0.0.1:6379"]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot write INFERD_HOME {home} (Not a directory")
    assert result.output.endswith(": set INFERD_HOME to a folder you can write\n")


def test_ctrl_c_outside_a_wait_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: a blank line and click's "Aborted!" (a Ctrl-C while `inferd deploy` started the operator)
    import inferd.cli.inspect

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setenv("INFERD_HOME", str(tmp_path))
    monkeypatch.setattr(inferd.cli.inspect, "backend_for", interrupted)
    result = CliRunner().invoke(cli, ["get"])
    assert result.exit_code == 1
    assert result.output == "error: stopped (Ctrl-C)\n"
