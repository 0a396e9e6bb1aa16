"""`inferd test`, in-process with CliRunner, on real models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd.cli.main import cli
from tests.conftest import example, make_project


def copy_example(name: str, target: Path) -> Path:
    return Path(shutil.copytree(example(name), target, ignore=shutil.ignore_patterns("__pycache__")))


def predictor_project(root: Path, deployment: str, api: str, files: dict[str, str]) -> Path:
    """A project of one API ``api`` (in ``deployment``) whose predictor is ``files["predictor.py"]``,
    with the other ``files`` beside it (samples, expected answers, requirements.txt)."""
    yaml_text = f"- kind: deployment\n  name: {deployment}\n- kind: api\n  name: {api}\n"
    return make_project(root, yaml_text + "  predictor:\n    path: predictor.py\n", files)


def test_prints_the_answer_to_each_sample() -> None:
    result = CliRunner().invoke(cli, ["test", str(example("iris-onnx"))])
    assert result.exit_code == 0, result.output
    assert 'classifier  sample.json: "iris-setosa"' in result.output
    assert result.output.rstrip().endswith("1 passed")


def test_a_wrong_expected_answer_exits_1_showing_the_difference(tmp_path: Path) -> None:
    project = copy_example("iris-onnx", tmp_path / "iris")
    (project / "expected.json").write_text('"iris-setosa"')
    matched = CliRunner().invoke(cli, ["test", str(project)])
    assert matched.exit_code == 0, matched.output
    assert "(matches expected.json)" in matched.output

    (project / "expected.json").write_text('"iris-virginica"')
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 1
    assert "differs from expected.json" in result.output
    assert 'the answer: got "iris-setosa", expected "iris-virginica"' in result.output
    assert "1 of 1 failed" in result.output


def test_an_expected_answer_with_no_sample_of_its_name_fails_the_run(tmp_path: Path) -> None:
    # expected_big.json beside sample-big.json (or left behind by a renamed sample) was never
    # read: the run said "2 passed", exit 0, with the answer it holds unchecked
    project = copy_example("iris-onnx", tmp_path / "iris")
    (project / "sample-big.json").write_bytes((project / "sample.json").read_bytes())
    (project / "expected_big.json").write_text('"iris-virginica"')
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 1, result.output
    assert "expected_big.json: no sample_big.json beside it, so nothing was compared with it" in result.output
    assert "1 of 3 failed" in result.output
    # the files named on the command line are the run: the folder's other expected files are not
    named = CliRunner().invoke(cli, ["test", str(project), str(project / "sample.json")])
    assert named.exit_code == 0, named.output
    (project / "expected_big.json").rename(project / "expected-big.json")
    fixed = CliRunner().invoke(cli, ["test", str(project)])
    assert fixed.exit_code == 1, fixed.output  # now compared: the answer is iris-setosa
    assert 'the answer: got "iris-setosa", expected "iris-virginica"' in fixed.output
    assert "1 of 2 failed" in fixed.output


def test_a_sample_with_nan_is_read_as_the_apis_read_it(tmp_path: Path) -> None:
    # json.dumps writes NaN for a missing value; an API reads it (as Cortex's Flask did)
    project = copy_example("iris-onnx", tmp_path / "iris")
    row = {"sepal_length": 5.2, "sepal_width": float("nan"), "petal_length": 1.4, "petal_width": 0.3}
    (project / "sample.json").write_text(json.dumps(row))
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 0, result.output
    assert "classifier  sample.json: " in result.output


def test_a_sample_with_an_integer_beyond_64_bits_is_read_as_the_apis_read_it(tmp_path: Path) -> None:
    # orjson read it as a float: the predictor got 1.8446744073709552e+19, where a served API
    # gets 18446744073709551616 (as Cortex's Flask read it)
    project = predictor_project(
        tmp_path / "echo",
        "d",
        "echo",
        {
            "predictor.py": "def predict(sample, metadata):\n    return repr(sample)\n",
            "sample.json": '{"n": 18446744073709551616, "m": -9223372036854775809}',
        },
    )
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 0, result.output
    assert "{'n': 18446744073709551616, 'm': -9223372036854775809}" in result.output


def test_whole_numbers_are_shown_and_compared_exactly(tmp_path: Path) -> None:
    # An answer holding an integer beyond 64 bits (which the endpoint sends) ended the run with
    # orjson's "TypeError: Integer exceeds 64-bit range"; math.isclose made whole numbers floats:
    # an id 2**60 + 1 "matches expected.json" holding 2**60 with --tolerance 0; and the expected
    # file was read by orjson (2**64 a float)
    project = predictor_project(
        tmp_path / "ids",
        "d",
        "ids",
        {
            "predictor.py": "def predict(sample, metadata):\n    return [2**60 + 1, 2**64 + 1]\n",
            "sample.json": "{}",
        },
    )
    shown = CliRunner().invoke(cli, ["test", str(project)])
    assert shown.exit_code == 0, shown.output
    assert f"ids  sample.json: [{2**60 + 1},{2**64 + 1}]" in shown.output
    (project / "expected.json").write_text(f"[{2**60}, {2**64}]")
    result = CliRunner().invoke(cli, ["test", str(project), "--tolerance", "0"])
    assert result.exit_code == 1, result.output
    assert f"[0]: got {2**60 + 1}, expected {2**60}" in result.output
    assert f"[1]: got {2**64 + 1}, expected {2**64}" in result.output
    (project / "expected.json").write_text(f"[{2**60 + 1}, {2**64 + 1}]")
    matched = CliRunner().invoke(cli, ["test", str(project), "--tolerance", "0"])
    assert matched.exit_code == 0, matched.output


def test_numbers_are_compared_within_the_tolerance(tmp_path: Path, regression_model: Path) -> None:
    project = make_project(
        tmp_path / "linear",
        "- kind: deployment\n  name: linear\n- kind: api\n  name: linear\n  onnx:\n    model: linear.onnx\n",
        {"sample-ones.json": "[[1, 1]]", "expected-ones.json": "[[[6.001]]]"},
        {"linear.onnx": regression_model},
    )
    assert CliRunner().invoke(cli, ["test", str(project)]).exit_code == 1
    loose = CliRunner().invoke(cli, ["test", str(project), "--tolerance", "0.01"])
    assert loose.exit_code == 0, loose.output


def test_the_tolerance_is_relative_to_the_expected_value(tmp_path: Path) -> None:
    # --help says "absolute, or relative to the expected value"; math.isclose took it relative to
    # the larger of the two: at --tolerance 0.4, 1.5 (and 150) "matched" an expected 1.0 (and 100)
    project = predictor_project(
        tmp_path / "far",
        "d",
        "far",
        {
            "predictor.py": "def predict(sample, metadata):\n    return [1.5, 150]\n",
            "sample.json": "{}",
            "expected.json": "[1.0, 100]",
        },
    )
    result = CliRunner().invoke(cli, ["test", str(project), "--tolerance", "0.4"])
    assert result.exit_code == 1, result.output
    assert "[0]: got 1.5, expected 1.0" in result.output
    assert "[1]: got 150, expected 100" in result.output
    within = CliRunner().invoke(cli, ["test", str(project), "--tolerance", "0.5"])
    assert within.exit_code == 0, within.output
    (project / "expected.json").write_text("[1.5, 150]")  # the answer exactly, at any tolerance
    assert CliRunner().invoke(cli, ["test", str(project), "--tolerance", "0"]).exit_code == 0
    # the default, 1e-6 (README): 1.5 is within it of 1.4999995, not of 1.49999
    (project / "expected.json").write_text("[1.4999995, 150]")
    assert CliRunner().invoke(cli, ["test", str(project)]).exit_code == 0
    (project / "expected.json").write_text("[1.49999, 150]")
    assert CliRunner().invoke(cli, ["test", str(project)]).exit_code == 1


def test_a_handler_exception_points_at_the_user_s_line(tmp_path: Path) -> None:
    project = copy_example("iris-onnx", tmp_path / "iris")
    handler = project / "handlers" / "iris.py"
    handler.write_text(handler.read_text().replace('sample["petal_width"]', 'sample["petal_widht"]'))
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 1
    assert "error: pre_inference in handlers/iris.py failed: KeyError: 'petal_widht'" in result.output
    line = next(n for n, text in enumerate(handler.read_text().splitlines(), 1) if "petal_widht" in text)
    assert f'File "{handler}", line {line}, in pre_inference' in result.output
    assert "predictor.py" not in result.output  # inferd's own frames are left out


def test_named_files_and_one_api(tmp_path: Path) -> None:
    project = copy_example("iris-onnx", tmp_path / "iris")
    request = tmp_path / "virginica.json"
    request.write_text(
        json.dumps({"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1})
    )
    result = CliRunner().invoke(cli, ["test", str(project), str(request), "--api", "classifier"])
    assert result.exit_code == 0, result.output
    assert 'classifier  virginica.json: "iris-virginica"' in result.output
    unknown = CliRunner().invoke(cli, ["test", str(project), "--api", "nope"])
    assert unknown.exit_code == 2
    assert "error: the project has no API 'nope' (it has: classifier)" in unknown.output


def test_a_project_without_samples_is_a_usage_error(tmp_path: Path) -> None:
    project = copy_example("iris-onnx", tmp_path / "iris")
    (project / "sample.json").unlink()
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 2
    assert "no sample*.json in" in result.output


def test_a_tolerance_that_is_no_distance_is_a_usage_error(tmp_path: Path) -> None:
    project = copy_example("iris-onnx", tmp_path / "iris")
    for tolerance in ("-1", "nan"):
        result = CliRunner().invoke(cli, ["test", str(project), "--tolerance", tolerance])
        assert result.exit_code == 2, result.output
        assert "--tolerance" in result.output
        assert "Traceback" not in result.output


def test_a_model_that_does_not_load_is_reported_not_raised(tmp_path: Path) -> None:
    project = copy_example("iris-onnx", tmp_path / "iris")
    (project / "models" / "iris.onnx").write_bytes(b"not an onnx model")
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # said, not a crash
    assert "classifier: cannot load: loading failed: InvalidProtobuf" in result.output


def test_relax_pins_runs_a_project_with_2019_pins(tmp_path: Path, inferd_home: Path) -> None:
    # The pin's error says --relax-pins; inferd test took no such option, so a Cortex project
    # with 2019 pins could not be tested unchanged (as inferd serve and deploy run it).
    project = predictor_project(
        tmp_path / "mpg",
        "auto",
        "mpg",
        {
            "predictor.py": "import numpy as np\n\ndef predict(sample, metadata):\n"
            "    return np.asscalar(np.array([2.5]))\n",
            "requirements.txt": "numpy==1.17.*\n",
            "sample.json": "{}",
        },
    )
    result = CliRunner().invoke(cli, ["test", str(project), "--relax-pins"])
    assert result.exit_code == 0, result.output
    assert "mpg  sample.json: 2.5" in result.output


def test_a_requirement_warning_is_said_by_inferd_test(tmp_path: Path, inferd_home: Path) -> None:
    # was: `numpy<2` beside inferd's numpy 2 passed in silence (inferd serve and deploy warn).
    # A pin below the numpy inferd runs with, which a wheel meets on every Python inferd installs
    # on (no numpy 1.x has one for 3.13: `numpy<2` cannot be installed there, a load error)
    numpy = __import__("numpy").__version__
    project = predictor_project(
        tmp_path / "pins",
        "pins",
        "p",
        {
            "predictor.py": "def predict(sample, metadata):\n    return 1\n",
            "requirements.txt": f"numpy<{numpy}\n",
            "sample.json": "{}",
        },
    )
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 0, result.output
    assert (
        f"p: warning: requirements.txt: numpy<{numpy} conflicts with numpy {numpy}, which inferd itself runs "
        "with; handlers import that version"
    ) in result.stderr


def test_nan_and_infinity_in_an_expected_answer_match_the_answer_a_client_gets(tmp_path: Path) -> None:
    # A NaN answer reaches a client as null; an expected.json holding NaN failed with
    # `["a"]: got null, expected null`, a difference nobody could see.
    project = predictor_project(
        tmp_path / "odd",
        "odd",
        "odd",
        {
            "predictor.py": "def predict(sample, metadata):\n"
            "    return {'a': float('nan'), 'b': float('inf'), 'c': 1.5}\n",
            "sample.json": "{}",
            "expected.json": '{"a": NaN, "b": Infinity, "c": 1.5}',
        },
    )
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 0, result.output
    assert '{"a":null,"b":null,"c":1.5}  (matches expected.json)' in result.output

    (project / "expected.json").write_text('{"a": NaN, "b": Infinity, "c": NaN}')
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert result.exit_code == 1, result.output
    assert '["c"]: got 1.5, expected null' in result.output
    assert '["a"]' not in result.output


def test_a_sample_larger_than_any_api_takes_is_refused_unread(tmp_path: Path) -> None:
    # was: a 20 GiB (sparse) sample.json was read whole into memory, and the machine ran out of it
    project = copy_example("iris-onnx", tmp_path / "iris")
    with (project / "sample.json").open("wb") as out:
        out.truncate(20 << 30)
    result = CliRunner().invoke(cli, ["test", str(project)])
    assert (result.exit_code, result.output) == (
        2,
        f"error: {project / 'sample.json'} is 20.0 GiB; no API of the project takes a request body "
        "over 10.0 MiB (max_body_size), so it could never be sent to one\n",
    )


def test_a_project_named_in_full_is_tested_from_a_folder_removed_under_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: in a shell whose folder had been removed (a CI job's scratch folder, cleaned), every
    # API of `inferd test /abs/project` "cannot load: ... No such file or directory": loading
    # noted the working folder to come back to, and a Python handler's imports looked there.
    for name, answer in (("iris-onnx", '"iris-setosa"'), ("iris-predictor", '"setosa"')):
        gone = tmp_path / f"gone-{name}"
        gone.mkdir()
        monkeypatch.chdir(gone)
        gone.rmdir()
        result = CliRunner().invoke(cli, ["test", str(example(name))])
        assert result.exit_code == 0, result.output
        assert f"sample.json: {answer}" in result.output and result.output.rstrip().endswith("1 passed")
