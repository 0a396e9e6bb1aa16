"""The cached environment's name for a requirements.txt naming a local package: what counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inferd.engine.packages import packages_dir
from inferd.operator.snapshots import snapshot_project


def _project(root: Path, line: str) -> Path:
    (root / "mylib" / "mylib").mkdir(parents=True)
    (root / "mylib" / "pyproject.toml").write_text("[project]\nname = 'mylib'\nversion = '0.1'\n")
    (root / "mylib" / "mylib" / "__init__.py").write_text("VALUE = 1\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'myapi'\nversion = '0.1'\n")
    (root / "handler.py").write_text("def predict(payload):\n    return payload\n")
    (root / "requirements.txt").write_text(f"{line}\n")
    return root / "requirements.txt"


@pytest.mark.parametrize("line", ["-e .", "./mylib", "-e ./mylib"])
def test_a_deployed_local_package_keeps_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    # was: the snapshot of a deploy holds its own .inferd-files.json and not the project's hidden
    # files (mylib/.gitignore, .idea/), so `inferd test` installed an environment the deploy
    # installed again; and a file a replica writes in its folder (the snapshot: handlers open
    # files relative to the project) was a new environment at the next operator restart
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    home = tmp_path / "home"
    requirements = _project(tmp_path / "project", line)
    (tmp_path / "project" / "mylib" / ".gitignore").write_text("build/\n")
    (tmp_path / "project" / ".idea").mkdir()
    (tmp_path / "project" / ".idea" / "workspace.xml").write_text("<x/>")
    tested = packages_dir(home, requirements)
    (tmp_path / "project" / ".idea" / "workspace.xml").write_text("<y/>")  # an editor's: no edit
    assert packages_dir(home, requirements) == tested
    snapshot = snapshot_project(tmp_path / "project", home)
    deployed = packages_dir(home, snapshot / "requirements.txt")
    assert deployed == tested
    (snapshot / "mylib" / "mylib" / "cache.json").write_text("{}")  # what a replica wrote
    (snapshot / "written.txt").write_text("x")
    assert packages_dir(home, snapshot / "requirements.txt") == deployed
    (tmp_path / "project" / "mylib" / "mylib" / "__init__.py").write_text("VALUE = 2\n")
    assert packages_dir(home, requirements) != tested
    copied = tmp_path / "copied"  # a snapshot copied out as a project of the user's: its edits count
    shutil.copytree(snapshot, copied)
    (copied / "mylib" / "mylib" / "__init__.py").write_text("VALUE = 3\n")
    assert packages_dir(home, copied / "requirements.txt") != deployed
    assert packages_dir(home, snapshot_project(tmp_path / "project", home) / "requirements.txt") != deployed


def test_a_package_folder_named_without_a_dot_counts(tmp_path: Path) -> None:
    # pip installs `mylib/` or `libs/mylib` as a local folder (a path with a /): was not hashed,
    # so an edit of it left every deploy on the environment of the first
    requirements = _project(tmp_path / "project", "mylib/")
    first = packages_dir(tmp_path / "home", requirements)
    (tmp_path / "project" / "mylib" / "mylib" / "__init__.py").write_text("VALUE = 2\n")
    assert packages_dir(tmp_path / "home", requirements) != first
