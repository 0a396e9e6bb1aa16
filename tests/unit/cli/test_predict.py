"""`inferd predict` checks its sample before it asks the operator anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"petal_length=1.4", "line 1 column 1", id="text"),
        pytest.param(b"", "empty document", id="empty"),
        pytest.param(b'{"a": 1', "", id="cut-short"),
    ],
)
def test_a_sample_that_is_not_json_is_named_as_the_mistake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, reason: str
) -> None:
    # No operator runs in this home: the sample is refused before one is needed.
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    sample = tmp_path / "sample.json"
    sample.write_bytes(content)
    result = CliRunner().invoke(cli, ["predict", "classifier", str(sample)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {sample} is not JSON (")
    assert reason in result.output
    assert result.output.endswith("): a sample is a JSON request body\n")
    assert result.output.count("\n") == 1


def test_a_sample_with_nan_is_sent_as_the_apis_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # json.dumps writes NaN for a missing value; the APIs read it (Cortex's Flask did), so the
    # sample goes on to the operator (none runs in this home: that is the error here).
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    sample = tmp_path / "sample.json"
    sample.write_text('{"sepal_length": 5.2, "sepal_width": NaN, "petal_length": Infinity}')
    result = CliRunner().invoke(cli, ["predict", "classifier", str(sample)])
    assert "is not JSON" not in result.output
    assert "operator is not running" in result.output and result.exit_code == 1


def test_a_sample_read_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: "Invalid value for 'SAMPLE': File '-' does not exist" (`... | inferd predict API -`)
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    bad = CliRunner().invoke(cli, ["predict", "classifier", "-"], input=b'{"a": 1')
    assert bad.exit_code == 2
    assert bad.output.startswith("error: stdin is not JSON (")
    good = CliRunner().invoke(cli, ["predict", "classifier", "-"], input=b'{"a": 1}')
    assert "operator is not running" in good.output and good.exit_code == 1
