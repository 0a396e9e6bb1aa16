"""Every command's --help shows how to run it and names only the arguments it has; a command
run without the argument it needs asks for it."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from inferd import logfiles
from inferd.cli.main import cli
from inferd.gateway.edge import EdgeLimits
from tests.conftest import INFERD


def commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    context = click.Context(cli)
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        found.append((name,))
        if isinstance(command, click.Group):
            found.extend((name, sub) for sub in command.list_commands(context))
    return found


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_every_command_s_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"inferd {' '.join(path)}" in result.output.split("Example", 1)[1]


def test_export_names_the_folder_its_help_talks_about() -> None:
    shown = CliRunner().invoke(cli, ["export", "--help"]).output
    assert "OUT must be new" in shown
    assert "--kubernetes OUT" in shown


def test_delete_s_timeout_speaks_of_the_drain_it_waits_for() -> None:
    shown = " ".join(CliRunner().invoke(cli, ["delete", "--help"]).output.split())
    assert "Stop waiting for the replicas to drain after this long (exit 1)" in shown
    assert "rollout" not in shown


def test_delete_without_a_name_outside_a_project_asks_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["delete"])
    assert result.exit_code == 2
    assert result.output == (
        "error: name the API or deployment to delete (`inferd get` lists them): "
        "this folder (and those above it) has no cortex.yaml to take the deployment from\n"
    )


@pytest.mark.parametrize(("typed", "meant"), [("deplyo", "deploy"), ("serv", "serve"), ("lgos", "logs")])
def test_a_misspelt_command_names_the_one_it_looks_like(typed: str, meant: str) -> None:
    result = CliRunner().invoke(cli, [typed], prog_name="inferd")
    assert result.exit_code == 2
    assert (
        result.output == f"error: No such command '{typed}'. Did you mean '{meant}'? (see `inferd --help`)\n"
    )


def test_a_command_like_none_gets_no_guess() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate' (see" in result.output and "Did you mean" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["test", "--tolerance", "x"],
            "Invalid value for '--tolerance': 'x' is not a valid float (see `inferd test --help`)",
        ),
        (
            ["get", "-o", "yaml"],
            "Invalid value for '-o' / '--output': 'yaml' is not one of 'table', 'json' "
            "(see `inferd get --help`)",
        ),
        (["logs"], "Missing argument 'API' (see `inferd logs --help`)"),
        (["env", "add", "lab", "--bogus"], "No such option '--bogus' (see `inferd env add --help`)"),
        (["--bogus"], "No such option '--bogus' (see `inferd --help`)"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_help_to_read(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args, prog_name="inferd")
    assert result.exit_code == 2
    assert result.output == f"error: {message}\n"


@pytest.mark.parametrize("args", [[], ["env"]])
def test_a_group_without_a_command_shows_its_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args, prog_name="inferd")
    assert result.output.startswith(f"Usage: inferd {' '.join([*args, ''])}[OPTIONS] COMMAND [ARGS]...")
    assert "Commands:" in result.output and "error:" not in result.output


def test_output_to_a_reader_that_stopped_reading_ends_quietly(tmp_path: Path) -> None:
    # `inferd get -o json | head -1`: once head exits, the rest of the output has nowhere to go;
    # the command stops as a program killed by SIGPIPE does, with no "error: Broken pipe".
    read, write = os.pipe()
    os.close(read)
    try:
        ended = subprocess.run(
            [str(INFERD), "version"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, INFERD_HOME=str(tmp_path)),
            timeout=60,
        )
    finally:
        os.close(write)
    assert (ended.returncode, ended.stderr) == (141, "")


def test_the_defaults_serve_s_help_writes_by_hand_are_the_gateway_s() -> None:
    """`inferd serve --help` writes the edge limits' defaults and variables itself
    (`[default: 65536; INFERD_MAX_HEADER_BYTES]`): each is the limit's default, and the variable
    sets that limit."""
    shown = " ".join(CliRunner().invoke(cli, ["serve", "--help"], terminal_width=1000).output.split())
    written = {
        variable: default
        for default, variable in re.findall(r"\[default: ([^;\]]+); (INFERD_[A-Z_]+)\]", shown)
    }
    defaults = EdgeLimits()
    actual = {}
    for field in fields(EdgeLimits):
        value = getattr(defaults, field.name)
        actual[f"INFERD_{field.name.upper()}"] = "1 GiB" if value == 1 << 30 else f"{value:g}"
        set_by = EdgeLimits.from_env({f"INFERD_{field.name.upper()}": "7"})
        assert getattr(set_by, field.name) == 7, field.name
    assert written == actual


def test_the_log_rotation_logs_help_names_is_the_one_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """`inferd logs --help`: INFERD_LOG_MAX_BYTES, default 64 MiB; INFERD_LOG_BACKUPS older files,
    default 3."""
    shown = " ".join(CliRunner().invoke(cli, ["logs", "--help"]).output.split())
    assert "INFERD_LOG_MAX_BYTES, default 64 MiB; INFERD_LOG_BACKUPS older files, default 3" in shown
    monkeypatch.delenv("INFERD_LOG_MAX_BYTES", raising=False)
    monkeypatch.delenv("INFERD_LOG_BACKUPS", raising=False)
    assert (logfiles.max_bytes(), logfiles.backups()) == (64 << 20, 3)
    monkeypatch.setenv("INFERD_LOG_MAX_BYTES", "1048576")
    monkeypatch.setenv("INFERD_LOG_BACKUPS", "5")
    assert (logfiles.max_bytes(), logfiles.backups()) == (1 << 20, 5)


def test_prune_s_help_says_it_removes_deleted_apis_payload_logs() -> None:
    """A deleted API's payload log stays until `inferd prune` (`inferd payloads --help`), which
    removes it (tests/integration/test_operations.py): prune's help named only the logs."""
    payloads = " ".join(CliRunner().invoke(cli, ["payloads", "--help"]).output.split())
    assert "after the API is deleted (until `inferd prune`)" in payloads
    for shown in (
        " ".join(CliRunner().invoke(cli, ["prune", "--help"]).output.split()),
        " ".join(CliRunner().invoke(cli, ["--help"], terminal_width=1000).output.split()),
    ):
        assert "deleted APIs' logs and payload logs" in shown
