"""Property-based fuzzing of the commands that need no operator: odd option values and paths are
one sentence and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferd.cli.main import cli


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cli-fuzz")
    home = root / "home"
    payloads = home / "payloads" / "d"
    payloads.mkdir(parents=True)
    (payloads / "a.jsonl").write_text('{"request_id": "1", "status": 200, "latency_ms": 1.0}\n')
    work = root / "work"
    (work / "adir").mkdir(parents=True)
    (work / "afile").write_text("x")
    saved = {name: os.environ.get(name) for name in ("INFERD_HOME",)}
    os.environ["INFERD_HOME"] = str(home)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        yield root
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_TEXTS = st.one_of(
    st.text(max_size=12).filter(lambda text: "\0" not in text),
    st.sampled_from(
        [
            "",
            "-1",
            "0",
            "1e400",
            "nan",
            "-inf",
            "9" * 30,
            "afile",
            "adir",
            "nope/x",
            "/",
            "-",
            "é",
            "a\nb",
            "d/a",
        ]
    ),
)
_COMMANDS: list[Callable[[str], list[str]]] = [
    lambda text: ["validate", text],
    lambda text: ["test", text],
    lambda text: ["test", "adir", "--api", text],
    lambda text: ["test", "adir", "--tolerance", text],
    lambda text: ["init", "adir", "--model", text],
    lambda text: ["payloads", text],
    lambda text: ["payloads", "a", "-n", text],
    lambda text: ["payloads", "d/a", "-o", text],
    lambda text: ["payloads", "a", "-e", text],
    lambda text: ["export", text, "--kubernetes", "out"],
    lambda text: ["completion", text],
    lambda text: ["env", "get", text],
    lambda text: ["env", "add", "fz", "--address", text],
    lambda text: ["env", "add", "fz", "--address", f"ray://[{text}:10001"],
    lambda text: ["env", "add", text, "--address", "h:1"],
    lambda text: ["env", "remove", text],
]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.integers(0, len(_COMMANDS) - 1), _TEXTS)
def test_odd_option_values_are_a_sentence_not_a_traceback(workspace: Path, command: int, text: str) -> None:
    args = _COMMANDS[command](text)
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert "Traceback" not in result.output, (args, result.output)
    if result.exit_code == 0:
        assert not result.output.startswith("error"), (args, result.output)
    listed = CliRunner().invoke(cli, ["env", "list"])  # what a command stored still reads
    assert listed.exit_code == 0, (args, listed.output, listed.exception)


@pytest.mark.parametrize(
    "line",
    [
        # each was a KeyError or ValueError traceback, exit 1
        '{"x": 1}',
        '{"request_id": "1", "status": 200, "latency_ms": "slow", "version": "v", "request": 5, '
        '"response": []}',
        "[1]",
        "5",
    ],
)
def test_a_payload_log_line_that_is_no_record_is_shown_without_a_traceback(
    workspace: Path, line: str
) -> None:
    log = workspace / "home" / "payloads" / "d" / "odd.jsonl"
    log.write_text(line + "\n" + '{"request_id": "r2", "status": 200, "latency_ms": 2.5, "version": "v"}\n')
    result = CliRunner().invoke(cli, ["payloads", "odd"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "r2" in result.output and "2.5 ms" in result.output
