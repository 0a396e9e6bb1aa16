"""`inferd export` writes only into an empty folder or one it wrote; it never deletes the user's files."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from inferd.cli.main import cli
from tests.conftest import example, make_project


def export(project: Path, out: Path) -> Result:
    return CliRunner().invoke(cli, ["export", str(project), "--kubernetes", str(out)])


def user_project(root: Path) -> Path:
    iris = example("iris-onnx")
    return make_project(
        root,
        (iris / "cortex.yaml").read_text(),
        {"handlers/iris.py": (iris / "handlers" / "iris.py").read_text()},
        {"models/iris.onnx": iris / "models" / "iris.onnx"},
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_holding_the_project_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    work = tmp_path / "w"
    project = user_project(work / "project")
    (work / "inferd").mkdir()
    (work / "inferd" / "notes.txt").write_text("mine")
    (work / "kubernetes").mkdir()
    (work / "kubernetes" / "cluster.yaml").write_text("mine too")
    before = tree(work)
    result = export(project, work)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "holds the project folder" in result.output
    assert tree(work) == before


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    project = user_project(tmp_path / "project")
    out = tmp_path / "out"
    out.mkdir()
    (out / "Dockerfile").write_text("FROM mine")
    result = export(project, out)
    assert result.exit_code == 2
    assert "not empty and was not written by inferd export" in result.output
    assert (out / "Dockerfile").read_text() == "FROM mine"


def test_a_new_folder_then_a_second_export_over_it_keeps_added_files(tmp_path: Path) -> None:
    project = user_project(tmp_path / "project")
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0
    listed = json.loads((out / ".inferd-export").read_text())["files"]
    assert "Dockerfile" in listed and "kubernetes/classifier.yaml" in listed
    (out / "kubernetes" / "mine.yaml").write_text("kept")
    (out / "project" / "handlers" / "old.py").unlink(missing_ok=True)
    assert export(project, out).exit_code == 0
    assert (out / "kubernetes" / "mine.yaml").read_text() == "kept"  # not written by inferd: kept
    assert (out / "Dockerfile").is_file()


def test_api_key_files_are_not_copied_into_the_build_context(tmp_path: Path) -> None:
    iris = example("iris-onnx")
    project = make_project(
        tmp_path / "project",
        "- kind: deployment\n  name: d\n- kind: api\n  name: guarded\n  onnx:\n    model: m.onnx\n"
        "  auth:\n    keys_file: secrets/keys.txt\n",
        {"secrets/keys.txt": "top-secret\n"},
        {"m.onnx": iris / "models" / "iris.onnx"},
    )
    out = tmp_path / "out"
    assert export(project, out).exit_code == 0, ""
    assert not (out / "project" / "secrets" / "keys.txt").exists()
    assert not any(b"top-secret" in content for content in tree(out).values())
