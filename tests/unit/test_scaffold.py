"""`inferd init`'s checks and names (the projects it writes are served in tests/integration/test_init.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli
from inferd.errors import UsageError
from inferd.scaffold import dns_name, init_project


def test_names_become_dns_names() -> None:
    assert dns_name("My Project_2", "x") == "my-project-2"
    assert dns_name("2024-model.v3", "x") == "model-v3"
    assert dns_name("___", "fallback") == "fallback"


def test_an_existing_folder_with_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists and is not an empty folder" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_two_kinds_of_project_at_once_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "new"), "--tensorflow", "--predictor"])
    assert result.exit_code == 2
    assert result.output == "error: --tensorflow and --predictor ask for two kinds of project: choose one\n"
    assert not (tmp_path / "new").exists()


def test_a_model_of_the_wrong_kind_is_refused_before_writing(tmp_path: Path) -> None:
    model = tmp_path / "weights.bin"
    model.write_bytes(b"\0")
    with pytest.raises(UsageError, match=r"an ONNX project needs a \.onnx file"):
        init_project(tmp_path / "new", "onnx", model)
    with pytest.raises(UsageError, match="needs a SavedModel folder"):
        init_project(tmp_path / "new", "tensorflow", model)
    with pytest.raises(UsageError, match="no such file or folder"):
        init_project(tmp_path / "new", "predictor", tmp_path / "missing")
    assert not (tmp_path / "new").exists()


def test_a_model_that_does_not_load_leaves_nothing_behind(tmp_path: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=r"--model .*broken\.onnx: cannot load it: "):
        init_project(empty, "onnx", model)
    assert empty.is_dir() and not any(empty.iterdir())


@pytest.mark.parametrize("folder", ["my api", "-api"])
def test_the_next_commands_run_as_printed_in_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    # `inferd init "my api"` printed `inferd serve my api --reload`: pasted, that serves "my"
    # and refuses "api"; a folder named -api became an option.
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["init", "--predictor", "--", folder])
    assert result.exit_code == 0, result.output
    commands = [shlex.split(line) for line in result.output.splitlines() if line.startswith("  inferd ")]
    assert [argv[:2] for argv in commands] == [["inferd", "serve"], ["inferd", "test"]]
    for argv in commands:
        assert not argv[2].startswith("-")
        assert Path(argv[2]).resolve() == tmp_path / folder


def _external_data_model(folder: Path) -> Path:
    """A MatMul whose weights are saved apart, in weights/w.bin (as models over 2 GB must be)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (folder / "weights").mkdir(parents=True)
    path = folder / "scorer.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="weights/w.bin", size_threshold=0)
    return path


def test_a_model_with_external_data_is_copied_with_it_and_as_a_zip(tmp_path: Path) -> None:
    # Was: only the .onnx file was copied, so a model whose weights sit apart failed to load
    # ("cannot load it") and nothing was written; a .zip of the two was refused.
    import zipfile

    import numpy as np

    from inferd.runtimes import load_runtime

    model = _external_data_model(tmp_path / "export")
    files = init_project(tmp_path / "plain", "onnx", model)
    assert "models/scorer.onnx" in files and "models/weights/w.bin" in files
    assert (tmp_path / "plain" / "models" / "weights" / "w.bin").read_bytes() == (
        tmp_path / "export" / "weights" / "w.bin"
    ).read_bytes()
    archive = tmp_path / "scorer.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(model, "scorer.onnx")
        bundle.write(tmp_path / "export" / "weights" / "w.bin", "weights/w.bin")
    assert "models/scorer.zip" in init_project(tmp_path / "zipped", "onnx", archive)
    for project, name in (("plain", "scorer.onnx"), ("zipped", "scorer.zip")):
        runtime = load_runtime("onnx", tmp_path / project / "models" / name)
        (answer,) = runtime.run({"x": np.ones((1, 4), dtype=np.float32)})
        assert answer.tolist() == [[18.0, 22.0, 26.0]]
