"""requirements.txt pins checked before pip runs: 2019 pins, --relax-pins, inferd's own packages."""

from __future__ import annotations

import asyncio
import importlib.metadata
import shlex
import subprocess
from pathlib import Path

import pytest
from packaging.version import Version

from inferd.config.schema import Api, ApiConfig
from inferd.engine import package_index, packages, requirement_plan
from inferd.engine.packages import ensure_packages, packages_dir
from inferd.engine.prepare import prepare
from inferd.engine.requirement_plan import PYTHON, plan
from inferd.engine.requirements_file import MAX_REQUIREMENTS_BYTES, read_requirements
from inferd.errors import LoadError

INDEX = {
    "somepkg": ["1.1.3", "1.2.0", "2.0.0"],  # wheels for this Python start at 1.1.3
    "freshpkg": ["3.0", "3.1"],
}


# Versions whose source is on the index (pip builds them): 2019 releases that never had a wheel.
SOURCES = {"somepkg": ["0.19.0", *INDEX["somepkg"]], "freshpkg": INDEX["freshpkg"]}


def versions_of(name: str) -> list[Version]:
    return [Version(v) for v in INDEX.get(name, [])]


def sources_of(name: str) -> list[Version]:
    return [Version(v) for v in SOURCES.get(name, [])]


def test_a_pin_with_no_wheel_here_is_one_sentence_naming_the_nearest_version() -> None:
    with pytest.raises(LoadError) as caught:
        plan("somepkg==0.21.*\n", relax=False, versions_of=versions_of, sources_of=sources_of)
    assert caught.value.message == (
        f"requirements.txt: somepkg==0.21.* cannot be installed on Python {PYTHON}; the nearest "
        "installable version is 1.1.3 (--relax-pins installs it)"
    )


def test_every_pin_that_cannot_install_is_named_in_one_error() -> None:
    # Cortex's mpg example pins scikit-learn, numpy and pandas of 2019, and a pip freeze (what
    # Cortex's Python client wrote) pins dozens: naming only the first had a user fix one line,
    # deploy, and meet the next (was: somepkg alone, otherpkg said at the next deploy).
    index = {**INDEX, "otherpkg": ["5.0"]}
    with pytest.raises(LoadError) as caught:
        plan(
            "somepkg==0.21.*\nfreshpkg>=3.0\notherpkg==1.0\n",
            relax=False,
            versions_of=lambda name: [Version(v) for v in index.get(name, [])],
            sources_of=sources_of,
        )
    assert caught.value.message == (
        f"requirements.txt: somepkg==0.21.* cannot be installed on Python {PYTHON}; the nearest "
        "installable version is 1.1.3 (--relax-pins installs it); "
        f"otherpkg==1.0 cannot be installed on Python {PYTHON}; the nearest installable version is "
        "5.0 (--relax-pins installs it)"
    )


def test_a_pin_with_only_its_source_on_the_index_goes_to_pip() -> None:
    # emoji==0.5.4 or future==0.18.2: pure-Python releases that never had a wheel; pip builds
    # them on any Python, as it did for Cortex
    checked = plan("somepkg==0.19.0\n", relax=False, versions_of=versions_of, sources_of=sources_of)
    assert checked.lines == ["somepkg==0.19.0"]
    assert checked.warnings == []
    assert checked.built == [
        f"somepkg==0.19.0 has no wheel for Python {PYTHON}; the nearest installable version is "
        "1.1.3 (--relax-pins installs it)"
    ]
    # --relax-pins still installs the nearest wheel instead
    relaxed = plan("somepkg==0.19.0\n", relax=True, versions_of=versions_of, sources_of=sources_of)
    assert relaxed.lines == ["somepkg==1.1.3"]


def test_a_source_build_that_fails_names_the_nearest_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def index(name: str, wheels_only: bool) -> list[Version]:
        return (versions_of if wheels_only else sources_of)(name)

    def pip_fails(scratch: Path, lines: list[str], cwd: Path) -> None:
        raise LoadError("installing requirements.txt failed: error: failed to build somepkg")

    monkeypatch.setattr(package_index, "_index_versions", index)
    monkeypatch.setattr(requirement_plan, "many_wheel_versions", lambda names: {})  # asked one by one
    monkeypatch.setattr(packages, "_pip_install", pip_fails)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("somepkg==0.19.0\n")
    with pytest.raises(LoadError) as caught:
        ensure_packages(tmp_path / "home", requirements)
    assert caught.value.message == (
        "installing requirements.txt failed: error: failed to build somepkg; somepkg==0.19.0 has "
        f"no wheel for Python {PYTHON}; the nearest installable version is 1.1.3 (--relax-pins "
        "installs it)"
    )


def test_relax_pins_installs_the_nearest_version_with_a_warning() -> None:
    checked = plan("somepkg==0.21.*\nfreshpkg>=3.0\n# a comment\n\n", relax=True, versions_of=versions_of)
    assert checked.lines == ["somepkg==1.1.3", "freshpkg>=3.0"]
    assert checked.warnings == [
        f"requirements.txt: somepkg==0.21.* cannot be installed on Python {PYTHON}; relaxed to 1.1.3"
    ]


def test_a_pin_newer_than_every_wheel_relaxes_to_the_newest() -> None:
    assert plan("somepkg==9.0\n", relax=True, versions_of=versions_of).lines == ["somepkg==2.0.0"]


def test_packages_inferd_already_has_are_not_installed_again() -> None:
    numpy = Version(__import__("numpy").__version__)
    checked = plan(f"numpy\nnumpy>={numpy}\nNumPy=={numpy}\n", relax=False, versions_of=versions_of)
    assert checked.lines == [] and checked.warnings == []


def test_a_pin_of_inferds_own_package_is_explained_never_silently_shadowed() -> None:
    numpy = __import__("numpy").__version__
    with pytest.raises(LoadError, match=rf"numpy==1\.17\.\* cannot be installed on Python {PYTHON}"):
        plan("numpy==1.17.*\n", relax=False, versions_of=lambda name: [Version("1.23.2")])
    relaxed = plan("numpy==1.17.*\n", relax=True, versions_of=versions_of)
    assert relaxed.lines == []
    assert relaxed.warnings == [
        f"requirements.txt: numpy==1.17.* relaxed to numpy {numpy}, which inferd itself runs with"
    ]
    # A pin that would install is still shadowed by inferd's copy: said, not hidden.
    conflict = plan("numpy==1.17.3\n", relax=False, versions_of=lambda name: [Version("1.17.3")])
    assert conflict.lines == []
    assert conflict.warnings == [
        f"requirements.txt: numpy==1.17.3 conflicts with numpy {numpy}, which inferd itself runs with; "
        "handlers import that version"
    ]


def test_unknown_packages_options_and_markers_go_to_pip_as_they_are() -> None:
    text = (
        "no-such-package-here==1.0\n--extra-index-url https://example.invalid\n"
        "somepkg==1.2.0 ; python_version < '3'\n"
    )
    checked = plan(text, relax=False, versions_of=versions_of)
    assert checked.lines == ["no-such-package-here==1.0", "--extra-index-url https://example.invalid"]


def test_tensorflow_and_xgboost_lines_are_met_by_the_cpu_builds_inferd_runs_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # inferd installs tensorflow-cpu and xgboost-cpu; `tensorflow` in a Cortex project's
    # requirements.txt must not make pip fetch the full package that replicas never import.
    own = {"tensorflow-cpu": "2.21.0", "xgboost-cpu": "3.2.0", "onnxruntime-gpu": "1.32.0"}

    def version(name: str) -> str:
        if name in own:
            return own[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    checked = plan(
        "tensorflow\nTensorFlow>=2.0\nxgboost\nonnxruntime\n", relax=False, versions_of=versions_of
    )
    assert checked.lines == [] and checked.warnings == []
    relaxed = plan("tensorflow==1.14.0\n", relax=True, versions_of=lambda name: [Version("2.21.0")])
    assert relaxed.lines == []
    assert relaxed.warnings == [
        "requirements.txt: tensorflow==1.14.0 relaxed to tensorflow 2.21.0, which inferd itself runs with"
    ]
    assert plan("somepkg\n", relax=False, versions_of=versions_of).lines == ["somepkg"]


def test_torchvision_is_the_build_for_inferds_torch_and_brings_no_torch_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cortex's pytorch/image-classifier pins torch==1.3.* and torchvision==0.4.*. Relaxed to the
    # oldest torchvision with a wheel here (0.15), pip pulled its torch==2.0 (and gigabytes of
    # CUDA libraries) into the project's folder, and that torchvision then ran against inferd's
    # newer torch, which replicas import first.
    monkeypatch.setattr(requirement_plan, "installed_version", {"torch": Version("2.13.0+cpu")}.get)
    index = [Version(v) for v in ["0.15.1", "0.27.0", "0.28.0", "0.29.2"]]
    checked = plan("torch==1.3.*\ntorchvision==0.4.*\n", relax=True, versions_of=lambda name: index)
    assert checked.lines == [] and checked.no_deps == ["torchvision==0.28.0"]
    assert "torchvision==0.4.* relaxed to 0.28.0, the torchvision built for torch 2.13.0+cpu" in "\n".join(
        checked.warnings
    )
    assert plan("torchvision\n", relax=False, versions_of=lambda name: index).no_deps == [
        "torchvision==0.28.0"
    ]
    cpu = [*index, Version("0.28.0+cpu")]
    assert plan("torchvision\n", relax=False, versions_of=lambda name: cpu).no_deps == [
        "torchvision==0.28.0+cpu"
    ]
    with pytest.raises(LoadError, match=r"torchvision==0\.4\.\* does not fit torch 2\.13\.0\+cpu.*0\.28\.0"):
        plan("torchvision==0.4.*\n", relax=False, versions_of=lambda name: index)


def _never(name: str) -> list[Version]:
    raise AssertionError(f"the index was asked about {name}")


def test_a_requirements_file_past_the_limits_is_refused_before_the_index_or_pip(tmp_path: Path) -> None:
    # was: a 10 MB file of pins asked the index about each one, one pip run each, before pip
    # itself ran: `inferd test` and the deploy said nothing for hours
    requirements = tmp_path / "requirements.txt"
    with requirements.open("w") as out:
        out.write("somepkg==0.21.*\n")
        out.truncate(MAX_REQUIREMENTS_BYTES + 1)  # sparse
    with pytest.raises(LoadError) as caught:
        ensure_packages(tmp_path / "home", requirements)
    assert caught.value.message == (
        "requirements.txt is 1.0 MiB; inferd takes one of at most 1 MiB (a pip freeze of a large "
        "environment is a few KiB)"
    )
    requirements.write_text("".join(f"pkg-{number}==1.0  # why\n" for number in range(2_001)) + "# end\n")
    with pytest.raises(LoadError) as caught:
        read_requirements(requirements)
    assert caught.value.message == (
        "requirements.txt lists 2,001 requirements; inferd installs at most 2,000 (a pip freeze of a "
        "large environment lists a few hundred)"
    )
    assert not (tmp_path / "home").exists()
    requirements.write_text("somepkg==1.2.0\n" * 2_000)
    assert plan(read_requirements(requirements), False, versions_of, _never).lines


def test_validate_says_a_requirements_file_is_past_the_limits(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from inferd.cli.main import cli

    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "h.py").write_text("def pre_inference(sample, signature, metadata):\n    return sample\n")
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  onnx:\n    model: m.onnx\n"
        "    request_handler: h.py\n"
    )
    (tmp_path / "requirements.txt").write_text("x\n" * 2_001)
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert (result.exit_code, result.output) == (
        2,
        "error: requirements.txt lists 2,001 requirements; inferd installs at most 2,000 (a pip "
        "freeze of a large environment lists a few hundred)\n",
    )


def test_validate_leaves_requirements_alone_when_no_api_installs_them(tmp_path: Path) -> None:
    # was: exit 2 ("lists 2,001 requirements", "-r ../common.txt is outside the project folder")
    # for a project whose only API has no Python code, which the deploy serves ignoring the file
    from click.testing import CliRunner

    from inferd.cli.main import cli

    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  onnx:\n    model: m.onnx\n"
    )
    for text in ("x\n" * 2_001, "-r ../common.txt\n"):
        (tmp_path / "requirements.txt").write_text(text)
        result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
        assert result.exit_code == 0, result.output


def test_a_requirements_file_including_another_installs_it_and_its_edits_count(tmp_path: Path) -> None:
    # was: "installing requirements.txt failed: ERROR: Could not open requirements file: ...
    # /envs/.installing-.../base.txt" (pip read the include beside inferd's copy of the list)
    project = tmp_path / "project"
    (project / "reqs").mkdir(parents=True)
    (project / "reqs" / "base.txt").write_text("# shared pins\n-c pins.txt\n")
    (project / "reqs" / "pins.txt").write_text("# none yet\n")
    requirements = project / "requirements.txt"
    requirements.write_text("-r reqs/base.txt\n")
    home = tmp_path / "home"
    first = packages_dir(home, requirements)
    assert ensure_packages(home, requirements) == first
    (project / "reqs" / "pins.txt").write_text("# none yet, still\n")  # a nested include's edit
    assert packages_dir(home, requirements) != first


def test_a_requirements_include_outside_the_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / "common.txt").write_text("# shared\n")
    (tmp_path / "project").mkdir()
    requirements = tmp_path / "project" / "requirements.txt"
    requirements.write_text("--requirement=../common.txt\n")
    with pytest.raises(LoadError) as caught:
        ensure_packages(tmp_path / "home", requirements)
    assert caught.value.message == (
        "requirements.txt: --requirement=../common.txt is outside the project folder, which is all a "
        "deploy copies: move the file into the project"
    )


def test_the_requirements_limit_counts_requirements_not_the_hash_lines_continuing_them(
    tmp_path: Path,
) -> None:
    # was: "lists 2,400 requirements; inferd installs at most 2,000" of a pip-compile
    # --generate-hashes file of 150 pins (each continued by its wheels' hashes)
    requirements = tmp_path / "requirements.txt"
    pins = [
        f"pkg-{number}==1.0 \\\n"
        + " \\\n".join(f"    --hash=sha256:{wheel:064x}" for wheel in range(15))
        + "\n"
        for number in range(150)
    ]
    requirements.write_text("# via pip-compile --generate-hashes\n" + "".join(pins))
    assert read_requirements(requirements).count("--hash") == 150 * 15


def test_an_included_files_pins_are_checked_as_the_files_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # was: `-r base.txt` went to pip as it was, so base.txt's numpy==1.17.* skipped the checks
    # (--relax-pins, inferd's own packages): pip was asked to build numpy 1.17 from source
    asked: list[list[str]] = []
    monkeypatch.setattr(packages, "_pip_install", lambda scratch, lines, *rest: asked.append(lines))
    project = tmp_path / "project"
    (project / "reqs").mkdir(parents=True)
    (project / "reqs" / "base.txt").write_text("numpy==1.17.*\n-c pins.txt\n")
    (project / "reqs" / "pins.txt").write_text("# none yet\n")
    requirements = project / "requirements.txt"
    requirements.write_text("-r reqs/base.txt\n-r reqs/base.txt\n")  # once is enough
    said: list[str] = []
    ensure_packages(tmp_path / "home", requirements, relax=True, warn=said.append)
    numpy = __import__("numpy").__version__
    assert said == [
        f"requirements.txt: numpy==1.17.* relaxed to numpy {numpy}, which inferd itself runs with"
    ]
    # the constraints, named where they are (quoted as pip reads it: a TMPDIR may hold a space)
    assert asked == [[f"-c {shlex.quote(str(project / 'reqs' / 'pins.txt'))}"]]


def test_an_install_that_fails_after_pip_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The collection keeps a folder whose maker still runs: one this operator left on a failure
    # (here its notes cannot be written, as on a full disk) stayed until the operator's end.
    monkeypatch.setattr(packages, "NOTES_FILE", "gone/.notes.json")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    home = tmp_path / "home"
    with pytest.raises(LoadError, match=r"^cannot install requirements.txt into .*: No such file"):
        ensure_packages(home, requirements)
    assert list(packages_dir(home, requirements).parent.iterdir()) == []
    monkeypatch.setattr(packages, "NOTES_FILE", ".notes.json")
    installed = ensure_packages(home, requirements)  # and the next deploy installs it
    assert (installed / ".complete").is_file()
    assert list(installed.parent.iterdir()) == [installed]


def test_a_disk_that_fills_during_the_install_is_the_apis_error(tmp_path: Path) -> None:
    # The notes written after pip on a full disk: `inferd deploy` said "operator error: OSError:
    # [Errno 28] No space left on device" (its 500), as a download once did; now the API's error.
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)], check=True)
    try:
        project = tmp_path / "project"
        project.mkdir()
        (project / "requirements.txt").write_text("# nothing to install\n")
        (project / "m.onnx").write_bytes(b"model")
        api = Api.model_validate(
            {"kind": "api", "name": "a", "onnx": {"model": "m.onnx", "request_handler": "h.py"}}
        )
        config = ApiConfig(api=api, deployment="d", endpoint="/d/a")
        home = disk / "home"  # one page: the scratch folder's mark takes it, the notes find none
        version = asyncio.run(
            prepare(config, project, "tree", "", home=home, sources={}, event=lambda *a, **k: None)
        )
        assert version.spec is None
        assert (
            version.error == f"cannot install requirements.txt into {home / 'envs'}: No space left on device"
        )
        assert list((home / "envs").iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
