"""``inferd get -w``: the table again every second (Cortex's docs/cluster/cli.md: "re-run the
command every second"), one JSON document a line with ``-o json``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from inferd.cli import inspect
from inferd.cli.main import cli


def test_get_w_runs_again_every_second_until_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            raise KeyboardInterrupt  # Ctrl-C: the loop ends quietly, exit 0

    def once(*args: Any) -> str:
        return json.dumps([{"name": "classifier", "round": len(pauses)}])

    monkeypatch.setattr(inspect, "backend_for", lambda env: None)
    monkeypatch.setattr(inspect, "folder_deployment", lambda: None)
    monkeypatch.setattr(inspect, "_get_once", once)
    monkeypatch.setattr("inferd.cli.inspect.time.sleep", sleep)
    result = CliRunner().invoke(cli, ["get", "-w", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert pauses == [1, 1, 1]
    assert [json.loads(line)[0]["round"] for line in result.output.splitlines()] == [0, 1, 2]
