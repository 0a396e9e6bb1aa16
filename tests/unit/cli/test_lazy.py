"""The CLI starts light: a command's module, and with it numpy, requests, pydantic or the gateway,
is imported only when that command runs or shows its own help; ``inferd --help`` still lists
every command with its one-line help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from inferd.cli.main import LAZY_COMMANDS, cli
from inferd.cli.options import LOCAL
from inferd.environments import LOCAL as ENVIRONMENTS_LOCAL

# What `inferd --help` must not import (each costs from tens to hundreds of milliseconds).
HEAVY = (
    "numpy",
    "requests",
    "pydantic",
    "yaml",
    "uvloop",
    "httptools",
    "prometheus_client",
    "inferd.gateway",
    "inferd.engine",
    "inferd.operator",
    "inferd.config",
    "inferd.client",
    "inferd.environments",
)

RUN = """
import json, sys
from inferd.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="inferd")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def run_cli(*args: str, columns: int = 80, home: Path | None = None) -> tuple[str, list[str]]:
    """``inferd ARGS`` in a fresh interpreter: its output, and the modules it imported."""
    env = {**os.environ, "COLUMNS": str(columns)}
    if home is not None:
        env["INFERD_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", RUN, *args], check=True, capture_output=True, text=True, env=env
    )
    output, _, modules = done.stdout.rstrip("\n").rpartition("\n")
    loaded: list[str] = json.loads(modules)
    return output + "\n", loaded


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def eager_help(columns: int) -> str:
    """``inferd --help`` once every command's module is imported (as before commands were lazy)."""
    # terminal_width: as click reads COLUMNS; the settings give -h as well as --help
    ctx = click.Context(cli, info_name="inferd", terminal_width=columns - 2, **cli.context_settings)
    for name in cli.list_commands(ctx):
        cli.get_command(ctx, name)
    return cli.get_help(ctx) + "\n"


@pytest.mark.parametrize("columns", [80, 60])
def test_help_lists_every_command_without_importing_them(columns: int) -> None:
    output, modules = run_cli("--help", columns=columns)
    assert heavy(modules) == []
    assert not [
        m
        for m in modules
        if m.startswith("inferd.cli.") and m not in ("inferd.cli.main", "inferd.cli.options")
    ]
    assert output == eager_help(columns)
    for name in [*LAZY_COMMANDS, "serve", "validate", "version"]:
        assert f"\n  {name} " in output


@pytest.mark.parametrize("command", ["serve", "validate", "version"])
def test_help_of_a_command_in_main_imports_nothing_heavy(command: str) -> None:
    output, modules = run_cli(command, "--help")
    assert heavy(modules) == []
    assert output.startswith(f"Usage: inferd {command} [OPTIONS]")


# env and export need what they describe (environments' defaults, the Kubernetes and Ray plans).
@pytest.mark.parametrize("command", sorted(set(LAZY_COMMANDS) - {"env", "export"}))
def test_help_of_a_command_imports_no_http_client_models_or_server(command: str) -> None:
    output, modules = run_cli(command, "--help")
    assert output.startswith(f"Usage: inferd {command} [OPTIONS]")
    # the client module (requests is imported when a Client is made), the state file names, which
    # process is the operator and what prune does (light: no numpy)
    allowed = {
        "inferd.client",
        "inferd.operator",
        "inferd.operator.state",
        "inferd.operator.pids",
        "inferd.operator.prune",
        "inferd.operator.workspaces",
    }
    assert [m for m in heavy(modules) if m not in allowed] == []


def test_a_command_imports_its_own_module_only() -> None:
    output, modules = run_cli("init", "--help")
    assert output.startswith("Usage: inferd init [OPTIONS]")
    assert "inferd.cli.develop" in modules
    assert "inferd.cli.deploy" not in modules


@pytest.mark.parametrize(
    "command", [("version",), ("get",), ("payloads", "api"), ("replay", "api", "--against", "other")]
)
def test_a_client_command_imports_no_model_config_or_server_code(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    output, modules = run_cli(*command, home=tmp_path)  # no operator runs in this home
    assert ("operator: not running" in output) == (command == ("version",))
    light = ("numpy", "yaml", "uvloop", "httptools", "pydantic", "starlette")
    assert [m for m in modules if m.split(".")[0] in light] == []
    # replay and payloads read the payload records' format, and nothing else of the gateway
    server = [m for m in modules if m.startswith(("inferd.config.", "inferd.gateway.", "inferd.engine"))]
    assert server == (["inferd.gateway.payloads"] if command[0] in ("payloads", "replay") else [])
    if command == ("get",):  # the command scripts poll most
        assert "asyncio" not in modules


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_a_lazy_command_is_the_one_its_summary_describes(name: str) -> None:
    module, summary = LAZY_COMMANDS[name]
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert command.name == name
    assert command.callback is not None and command.callback.__module__ == module
    assert " ".join((command.help or "").partition("\n\n")[0].split()) == summary


def test_an_unknown_command_is_one_sentence_and_exit_2() -> None:
    result = CliRunner().invoke(cli, ["nope"])
    assert result.exit_code == 2
    assert "error: No such command 'nope' (see" in result.output
    assert "Traceback" not in result.output


def test_env_option_defaults_to_the_local_environment() -> None:
    assert LOCAL == ENVIRONMENTS_LOCAL
