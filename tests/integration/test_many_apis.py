"""One operator serving many APIs, as a team's machine does after a few months: Python
predictors that import nothing, one deployment shared by the file (it costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import make_project
from tests.integration.conftest import Inferd, stop_operator

APIS = 24
PREDICTOR = "def predict(sample, metadata):\n    return [metadata['tag'], sample]\n"


def config(tags: dict[int, str] | None = None) -> str:
    """The project's cortex.yaml: ``APIS`` APIs, each tagged ``v1`` unless ``tags`` says."""
    blocks = "".join(
        f"- kind: api\n  name: a{i:02d}\n  predictor:\n    path: p.py\n"
        f"    metadata: {{tag: {(tags or {}).get(i, 'v1')}}}\n  compute: {{cpu: 10m, mem: 10Mi}}\n"
        for i in range(APIS)
    )
    return "- kind: deployment\n  name: many\n" + blocks


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Inferd, Path]]:
    """An operator with the ``many`` deployment live, and the project's folder."""
    root = tmp_path_factory.mktemp("many")
    runner = Inferd(root / "home")
    project = make_project(root / "project", config(), files={"p.py": PREDICTOR})
    try:
        runner.run("deploy", str(project))
        yield runner, project
    finally:
        stop_operator(runner)


def test_a_404_names_the_nearest_endpoints_not_every_one(many: tuple[Inferd, Path]) -> None:
    inferd, _ = many
    answer = inferd.post("/many/a7", {})  # a typo of /many/a07
    assert answer.status_code == 404
    message = answer.json()["error"]
    # It named all 24 (2 KB for 81 APIs); now the ten nearest, and where the rest are listed
    assert message.startswith(f"no API at /many/a7 ({APIS} endpoints, the nearest: /many/a0"), message
    assert message.endswith("; GET / lists them all)"), message
    assert message.count("/many/a") == 10 + 1
    assert len(requests.get(inferd.url + "/", timeout=30).json()["apis"]) == APIS


def test_an_update_of_one_api_of_many_shows_that_api_and_restarts_it_alone(many: tuple[Inferd, Path]) -> None:
    inferd, project = many
    before = {f"a{i:02d}": inferd.replica_pids(f"many/a{i:02d}") for i in range(APIS)}
    (project / "cortex.yaml").write_text(config({5: "v2"}))
    result = inferd.run("deploy", str(project))
    assert result.stdout.strip() == "deployment updated"
    lines = result.stderr.splitlines()
    # Each of the 23 others was a line of its own ("a00: live (1/1 replicas up to date)", ...)
    assert lines[-1] == "a05: live (1/1 replicas up to date)", result.stderr
    assert f"{APIS - 1} unchanged apis: live" in lines, result.stderr
    assert not any(line.startswith("a00:") for line in lines), result.stderr
    assert inferd.post("/many/a05", 1).json() == ["v2", 1]
    after = {name: inferd.replica_pids(f"many/{name}") for name in before}
    assert [name for name in before if after[name] != before[name]] == ["a05"]
