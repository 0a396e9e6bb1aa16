"""The README's developer's loop, step by step: init, serve --reload, edit, test."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from inferd.cli.main import cli
from tests.conftest import ROOT, Server, wait_for

Serve = Callable[..., Server]


def test_the_readme_loop(serve: Serve, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    for step in ("inferd init my-api", "inferd serve my-api --reload", "inferd test my-api"):
        assert step in readme
    project = tmp_path / "my-api"
    assert CliRunner().invoke(cli, ["init", str(project)]).exit_code == 0

    server = serve(project, "--reload")
    wait_for(lambda: "watching" in server.log(), 30, "the watcher")
    sample = (project / "sample.json").read_bytes()
    assert server.post("/my-api/classifier", data=sample).json() == "setosa"

    handler = project / "handlers" / "classifier.py"
    handler.write_text(handler.read_text().replace('labels = ["setosa"', 'labels = ["Setosa"'))
    wait_for(lambda: server.post("/my-api/classifier", data=sample).json() == "Setosa", 60, "the edit")
    wait_for(lambda: "inferd: handlers/classifier.py changed; reloading classifier" in server.log(), 30)
    wait_for(lambda: re.search(r"inferd: reloaded classifier in \d+\.\d s", server.log()), 30, server.log())

    tested = CliRunner().invoke(cli, ["test", str(project)])
    assert tested.exit_code == 1
    assert 'classifier  sample.json: "Setosa"' in tested.output
    assert 'the answer: got "Setosa", expected "setosa"' in tested.output
    (project / "expected.json").write_text('"Setosa"\n')
    assert CliRunner().invoke(cli, ["test", str(project)]).exit_code == 0
