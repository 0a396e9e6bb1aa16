"""``inferd validate`` checks what it can without loading a model or running user code."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli
from inferd.errors import LoadError
from inferd.handler.loader import check_source
from tests.conftest import EXAMPLES, make_project

API = "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  onnx:\n    model: m.onnx\n"


def validate(root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["validate", str(root)])
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["iris-onnx", "iris-tensorflow", "iris-predictor"])
def test_the_examples_are_valid(name: str) -> None:
    code, output = validate(EXAMPLES / name)
    assert code == 0 and output.endswith("cortex.yaml is valid\n")


def test_a_missing_keys_file_is_a_config_error(tmp_path: Path) -> None:
    root = make_project(tmp_path, API + "  auth:\n    keys_file: keys.txt\n", {"m.onnx": "onnx"})
    code, output = validate(root)
    assert code == 2
    assert output == "error: cortex.yaml:8: api 'a': auth.keys_file: keys.txt does not exist\n"


def test_a_post_inference_with_wrong_parameters_is_a_config_error(tmp_path: Path) -> None:
    handler = "import a_package_not_installed\ndef post_inference(prediction, metadata):\n    pass\n"
    root = make_project(tmp_path, API + "    request_handler: h.py\n", {"m.onnx": "onnx", "h.py": handler})
    code, output = validate(root)  # the missing package does not matter: nothing is imported
    assert code == 2
    assert output == (
        "error: api 'a': h.py: post_inference(prediction, metadata) must take 3 arguments: "
        "post_inference(prediction, signature, metadata)\n"
    )


def check(tmp_path: Path, source: str, kind: str = "handler") -> None:
    path = tmp_path / "code.py"
    path.write_text(source)
    check_source(path, kind, "code.py")


@pytest.mark.parametrize(
    "source",
    [
        "def pre_inference(sample, signature, metadata): pass\n",
        "def post_inference(prediction, *rest): pass\n",
        "def post_inference(prediction, signature, metadata, extra=None, *, debug=False): pass\n",
        "from shared import post_inference\n",  # bound at run time: left to the replica
        "try:\n    import x\nexcept ImportError:\n    def pre_inference(a, b, c): pass\n",
        "labels = ['a', 'b']  # neither hook: Cortex served it (the sample straight to the model)\n",
    ],
)
def test_good_handlers_pass(tmp_path: Path, source: str) -> None:
    check(tmp_path, source)


@pytest.mark.parametrize(
    ("source", "kind", "message"),
    [
        ("def pre_inference(sample):\n  pass\n", "handler", r"pre_inference\(sample\) must take 3"),
        ("def post_inference(a, b, c, d): pass\n", "handler", "must take 3 arguments"),
        ("def pre_inference(a, b, c, *, key): pass\n", "handler", "must take 3 arguments"),
        ("def pre_inferance(a, b, c): pass\n", "handler", r"defines pre_inferance\(\); did you mean"),
        ("def predict(sample): pass\n", "predictor", r"predict\(sample\) must take 2 arguments"),
        ("def init(model_path, metadata): pass\n", "predictor", r"must define predict\(sample, metadata\)"),
        ("def predict(sample, metadata)\n  pass\n", "predictor", "code.py:1: invalid syntax"),
    ],
)
def test_bad_code_is_named(tmp_path: Path, source: str, kind: str, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        check(tmp_path, source, kind)


def test_an_error_never_writes_a_file_name_s_control_bytes_to_the_terminal(tmp_path: Path) -> None:
    # was: "error: cortex.yaml:6: api 'a': onnx.model: m\x1b[2J.onnx does not exist" cleared the screen
    root = make_project(tmp_path, API.replace("m.onnx", '"m\\e[2J.onnx"'), {})
    code, output = validate(root)
    assert code == 2
    assert output == "error: cortex.yaml:6: api 'a': onnx.model: m\\x1b[2J.onnx does not exist\n"


def test_a_linked_folder_s_name_never_writes_control_bytes_to_the_terminal(tmp_path: Path) -> None:
    # was: "warning: \x1b[2J is a link to a folder ..." cleared the screen
    root = make_project(tmp_path / "p", API, {"m.onnx": "onnx"})
    (tmp_path / "elsewhere").mkdir()
    (root / "a\x1b[2J").symlink_to(tmp_path / "elsewhere")
    result = CliRunner().invoke(cli, ["validate", str(root)], color=True)  # as on a terminal
    assert result.exit_code == 0
    assert "warning: a\\x1b[2J is a link to a folder" in result.output
    assert "\x1b" not in result.output


def test_the_current_folder_removed_under_the_shell_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: `inferd validate` (or deploy, serve, test: the project "." by default) in a folder
    # removed while the shell was in it said ".: a symbolic link that loops, not a project
    # folder", and `inferd init NAME` said "error: No such file or directory".
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    for args in (["validate"], ["validate", "."], ["test"], ["init", "new"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0 and "the current folder was removed" in result.output, (
            args,
            result.output,
        )
        assert "loops" not in result.output
