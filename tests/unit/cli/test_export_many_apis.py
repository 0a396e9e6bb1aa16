"""`inferd export` of a project of many APIs reads its config once, not once per API.

Each API's pods get a config of that API alone, and each was cut from the whole file parsed
again: quadratic in the APIs (100 APIs of 13 lines took 12.8 s, 84% of it in the YAML parser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from inferd.cli.main import cli
from inferd.config import load
from tests.conftest import make_project

APIS = 30


def many_apis(tmp_path: Path, api: str, predictor: str) -> Path:
    """A project of ``APIS`` APIs a00, a01, ... each described by ``api`` (a format string of
    ``i``, its lines after the name), all served by ``predictor`` (p.py)."""
    blocks = "".join(f"- kind: api\n  name: a{i:02d}\n  " + api.format(i=i) + "\n" for i in range(APIS))
    return make_project(tmp_path / "p", "- kind: deployment\n  name: many\n" + blocks, {"p.py": predictor})


def test_a_project_of_many_apis_is_parsed_once_and_each_pod_serves_its_own_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = many_apis(
        tmp_path,
        "predictor:\n    path: p.py\n    metadata: {{tag: t{i}}}",
        "def predict(sample, metadata):\n    return metadata['tag']\n",
    )
    parse_yaml = load.parse_yaml
    parsed: list[str] = []

    def counted(text: str, name: str) -> Any:
        parsed.append(name)
        return parse_yaml(text, name)

    monkeypatch.setattr(load, "parse_yaml", counted)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(out)])
    assert result.exit_code == 0, result.output
    # the project's load, and the export's cut of each API's config from it: it was 1 + APIS
    assert len(parsed) <= 2, parsed
    for i in range(APIS):
        items = yaml.safe_load((out / "project" / f"inferd-a{i:02d}.yaml").read_text())
        assert items == [
            {"kind": "deployment", "name": "many"},
            {"kind": "api", "name": f"a{i:02d}", "predictor": {"path": "p.py", "metadata": {"tag": f"t{i}"}}},
        ]


def test_many_apis_that_scale_to_zero_are_one_warning_naming_them(tmp_path: Path) -> None:
    project = many_apis(
        tmp_path,
        "predictor: {{path: p.py}}\n  compute: {{min_replicas: 0}}",
        "def predict(sample, metadata):\n    return sample\n",
    )
    result = CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    # It was 30 lines of the same 250 characters but the name, above the line saying what was written
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warning.startswith(f"warning: {APIS} apis: min_replicas: 0: a HorizontalPodAutoscaler keeps"), (
        warning
    )
    assert warning.endswith(": " + ", ".join(f"'a{i:02d}'" for i in range(APIS))), warning
