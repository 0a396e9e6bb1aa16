"""`inferd env` and `-e NAME` on the commands, in-process with CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path))
    return CliRunner()


def test_env_add_list_remove(runner: CliRunner, tmp_path: Path) -> None:
    added = runner.invoke(cli, ["env", "add", "lab", "--provider", "ray", "--address", "127.0.0.1:6379"])
    assert added.exit_code == 0, added.output
    assert "added environment 'lab'" in added.output
    listed = runner.invoke(cli, ["env", "list"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[1].split()[:2] == ["local", "local"]
    assert lines[2].split()[:3] == ["lab", "ray", "127.0.0.1:6379"]
    assert "http://127.0.0.1:8000" in lines[2]
    assert runner.invoke(cli, ["env", "remove", "lab"]).exit_code == 0
    assert "lab" not in runner.invoke(cli, ["env", "list", "-o", "json"]).output


def test_env_list_s_json_gives_the_local_environment_no_ray_http_port(runner: CliRunner) -> None:
    """`inferd env list -o json` said `"http_port": 8000` for `local`, whose gateway is on
    INFERD_PORT (8888 by default): the port of a Ray Serve proxy it has not. The table says "-"."""
    added = runner.invoke(cli, ["env", "add", "lab", "--address", "127.0.0.1:6379", "--http-port", "8100"])
    assert added.exit_code == 0, added.output
    listed = json.loads(runner.invoke(cli, ["env", "list", "-o", "json"]).output)
    assert listed == [
        {"name": "local", "provider": "local", "address": None, "http_port": None},
        {"name": "lab", "provider": "ray", "address": "127.0.0.1:6379", "http_port": 8100},
    ]


def test_local_cannot_be_removed(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["env", "remove", "local"])
    assert result.exit_code == 2
    assert "error: 'local' is built in and cannot be removed" in result.output


def test_a_bad_address_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["env", "add", "lab", "--address", "just-a-host"])
    assert result.exit_code == 2 and "ray://HOST:PORT" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["deploy", ".", "-e", "nope"],
        ["refresh", ".", "-e", "nope"],
        ["get", "-e", "nope"],
        ["predict", "api", "sample.json", "-e", "nope"],
        ["logs", "api", "-e", "nope"],
        ["delete", "api", "-e", "nope"],
    ],
)
def test_an_unknown_environment_exits_2_naming_env_list(
    runner: CliRunner, command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample.json").write_text("{}")
    result = runner.invoke(cli, command)
    assert result.exit_code == 2, result.output
    assert "environment 'nope' does not exist (see `inferd env list`)" in result.output
    assert "Traceback" not in result.output


def test_cortex_default_environment_is_this_machine_unless_added(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cortex get -e default`: Cortex's CLI named the environment it used unless told "default"
    from inferd.environments import EnvironmentStore

    assert EnvironmentStore().get("default").name == "local"
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["get", "-e", "default"])
    assert "does not exist" not in result.output
    assert "operator is not running" in result.output  # it asked this machine's operator
    runner.invoke(cli, ["env", "add", "default", "--address", "127.0.0.1:6379"])
    assert EnvironmentStore().get("default").provider == "ray"  # an added one wins


def test_local_only_commands_refuse_a_ray_environment(runner: CliRunner) -> None:
    runner.invoke(cli, ["env", "add", "lab", "--address", "127.0.0.1:6379"])
    result = runner.invoke(cli, ["up", "-e", "lab"])
    assert result.exit_code == 2
    assert "`inferd up` works on the local environment only" in result.output


def test_help_does_not_import_ray() -> None:
    code = "import sys; from inferd.cli.main import cli; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("address", ["ray://[::1", "[::1:6379", "ray://[::1]x:10001", "[]:6379"])
def test_an_address_whose_bracket_is_not_closed_is_refused(runner: CliRunner, address: str) -> None:
    # was added, and every `inferd env list` after it ended in a traceback (substring not found)
    result = runner.invoke(cli, ["env", "add", "lab", "--address", address])
    assert result.exit_code == 2, result.output
    assert "ray://HOST:PORT" in result.output
    listed = runner.invoke(cli, ["env", "list"])
    assert listed.exit_code == 0 and "lab" not in listed.output


def test_an_unclosed_bracket_an_older_inferd_stored_is_listed(runner: CliRunner, tmp_path: Path) -> None:
    environments = '{"lab": {"provider": "ray", "address": "ray://[::1", "http_port": 8000}}'
    (tmp_path / "environments.json").write_text(f'{{"format": 1, "environments": {environments}}}')
    listed = runner.invoke(cli, ["env", "list"])
    assert listed.exit_code == 0, listed.output
    assert "ray://[::1" in listed.output
