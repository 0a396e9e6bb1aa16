"""requirements.txt files as teams write them: encodings, conda files, local packages, pip's errors."""

from __future__ import annotations

import subprocess
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from packaging.version import Version

from inferd.cli.main import cli
from inferd.engine import package_index
from inferd.engine.package_index import NotOnIndex
from inferd.engine.packages import ensure_packages, packages_dir
from inferd.engine.pip_run import pip_failure
from inferd.engine.requirement_plan import plan
from inferd.engine.requirements_file import read_requirements
from inferd.errors import LoadError


def no_index(name: str) -> list[Version]:
    raise AssertionError(f"the index was asked about {name}")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_a_requirements_file_with_a_byte_order_mark_reads_as_its_text(tmp_path: Path, encoding: str) -> None:
    # was: UTF-8 with a BOM (Notepad) hid its first line from the checks ("\ufeffnumpy==1.26.4" went
    # to pip, which installed a second numpy that handlers never import, 8 s and 60 MB, no
    # warning); UTF-16 (PowerShell's `pip freeze > requirements.txt`) reached pip as NUL bytes:
    # "installing requirements.txt failed: ��-\0-\0f\0i\0n\0d\0..." printed to the terminal
    requirements = tmp_path / "requirements.txt"
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(encoding, b"")
    requirements.write_bytes(bom + "numpy==1.26.4\r\n--find-links ./wheels\r\n".encode(encoding))
    text = read_requirements(requirements)
    assert text.splitlines() == ["numpy==1.26.4", "--find-links ./wheels"]
    numpy = __import__("numpy").__version__
    checked = plan(text, relax=False, versions_of=lambda name: [Version("1.26.4"), Version(numpy)])
    assert checked.lines == ["--find-links ./wheels"]
    assert checked.warnings == [
        f"requirements.txt: numpy==1.26.4 conflicts with numpy {numpy}, which inferd itself runs with; "
        "handlers import that version"
    ]


def test_a_conda_environment_file_is_refused_in_one_sentence_also_by_validate(tmp_path: Path) -> None:
    # was: "installing requirements.txt failed: ERROR: Invalid requirement: 'name: myenv': Expected
    # semicolon ... (from line 1 of /home/.../envs/.installing-fgy87aet/.requirements.txt)", and
    # `inferd validate` said the project was valid
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: p\n  predictor:\n    path: predictor.py\n"
    )
    (tmp_path / "predictor.py").write_text("def predict(sample, metadata):\n    return 1\n")
    (tmp_path / "requirements.txt").write_text(
        "name: myenv\nchannels:\n  - conda-forge\ndependencies:\n  - numpy=1.26\n  - pip:\n    - mylib==0.1\n"
    )
    expected = (
        "requirements.txt is a conda environment file (line 1: name: myenv); inferd installs pip "
        "requirements: list the packages of its pip: section one per line (mylib==0.1)"
    )
    with pytest.raises(LoadError) as caught:
        read_requirements(tmp_path / "requirements.txt")
    assert caught.value.message == expected
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split())


def test_an_editable_local_package_is_installed_as_a_copy() -> None:
    # was: `-e ./mylib` left a __editable__.mylib-0.1.pth in the environment, which replicas never
    # read (the folder is on sys.path, not a site folder): `import mylib` found the project's
    # mylib/ folder as an empty namespace package ("module 'mylib' has no attribute 'VALUE'")
    checked = plan(
        "-e ./mylib\n--editable=.\n-e git+https://example.invalid/x.git#egg=x\n",
        relax=False,
        versions_of=no_index,
        sources_of=no_index,
    )
    assert checked.lines == ["./mylib", ".", "git+https://example.invalid/x.git#egg=x"]


def _wheel(folder: Path, value: int) -> Path:
    """A wheel of the package ``mylib`` 0.1 whose ``VALUE`` is ``value`` (built without pip)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mylib-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("mylib/__init__.py", f"VALUE = {value}\n")
        wheel.writestr("mylib-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: mylib\nVersion: 0.1\n")
        wheel.writestr(
            "mylib-0.1.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("mylib-0.1.dist-info/RECORD", "")
    return path


@pytest.mark.parametrize(
    "text",
    [
        "./wheels/mylib-0.1-py3-none-any.whl\n",
        "--find-links ./wheels\n--no-index\nmylib==0.1\n",
        "-f wheels\nmylib\n",
        "mylib @ file:./wheels/mylib-0.1-py3-none-any.whl\n",
    ],
)
def test_a_local_wheel_rebuilt_under_the_same_name_is_installed_again(tmp_path: Path, text: str) -> None:
    # was: the environment was named by the text of requirements.txt alone, so a wheel rebuilt as
    # mylib-0.1 (a fix, the version not bumped) left every deploy serving the first build's code
    project = tmp_path / "project"
    _wheel(project / "wheels", 1)
    requirements = project / "requirements.txt"
    requirements.write_text(text)
    home = tmp_path / "home"
    first = packages_dir(home, requirements)
    assert packages_dir(home, requirements) == first
    _wheel(project / "wheels", 2)
    assert packages_dir(home, requirements) != first


def test_an_edit_of_a_local_package_folder_is_installed_again(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "mylib" / "src" / "mylib").mkdir(parents=True)
    (project / "mylib" / "pyproject.toml").write_text("[project]\nname = 'mylib'\nversion = '0.1'\n")
    source = project / "mylib" / "src" / "mylib" / "__init__.py"
    source.write_text("VALUE = 1\n")
    requirements = project / "requirements.txt"
    requirements.write_text("-e ./mylib\n")
    home = tmp_path / "home"
    first = packages_dir(home, requirements)
    (project / "mylib" / "src" / "mylib" / "__pycache__").mkdir()  # what an import leaves: no edit
    (project / "mylib" / "src" / "mylib" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (project / "mylib" / "build" / "lib").mkdir(parents=True)  # what pip's build leaves: no edit
    (project / "mylib" / "build" / "lib" / "x.py").write_text("")
    (project / "mylib" / "src" / "mylib.egg-info").mkdir()
    (project / "mylib" / "src" / "mylib.egg-info" / "PKG-INFO").write_text("")
    assert packages_dir(home, requirements) == first
    source.write_text("VALUE = 2\n")
    second = packages_dir(home, requirements)
    assert second != first
    (project / "mylib" / "src" / "mylib" / "build").mkdir()  # a subpackage named build: code
    (project / "mylib" / "src" / "mylib" / "build" / "__init__.py").write_text("")
    assert packages_dir(home, requirements) != second


def _package(folder: Path, name: str, version: str, *requires: str) -> None:
    """A wheel of ``name`` ``version`` with one module, depending on ``requires``."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        wheel.writestr(f"{name}-{version}.data/scripts/{name}-tool", "#!python\n")  # into bin/
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        wheel.writestr(f"{info}/METADATA", metadata + "".join(f"Requires-Dist: {r}\n" for r in requires))
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


def test_a_dependency_inferd_already_has_is_not_kept_beside_it(tmp_path: Path) -> None:
    # pip --target ignores the packages of the environment it runs in: was a `numexpr` line left a
    # second numpy (70 MB of 75) in the environment, never imported (inferd's comes first), and a
    # dependency on another version of one was said nowhere
    numpy, orjson = __import__("numpy").__version__, __import__("orjson").__version__
    project = tmp_path / "project"
    _package(project / "wheels", "numpy", numpy)
    _package(project / "wheels", "orjson", "0.0.1")
    _package(project / "wheels", "mylib", "0.1", "numpy", "orjson==0.0.1")
    requirements = project / "requirements.txt"
    requirements.write_text("--no-index\n--find-links ./wheels\nmylib\n")
    said: list[str] = []
    target = ensure_packages(tmp_path / "home", requirements, warn=said.append)
    assert sorted(path.name for path in target.iterdir() if not path.name.startswith(".")) == [
        "bin",
        "mylib",
        "mylib-0.1.dist-info",
    ]
    assert [path.name for path in (target / "bin").iterdir()] == ["mylib-tool"]  # the others' gone
    assert said == [
        f"requirements.txt: pip brought orjson 0.0.1; handlers import orjson {orjson}, which inferd runs with"
    ]
    said.clear()
    assert ensure_packages(tmp_path / "home", requirements, warn=said.append) == target  # cached
    assert len(said) == 1  # said again at each deploy


def test_a_local_wheel_installs_with_no_index(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _wheel(project / "wheels", 7)
    requirements = project / "requirements.txt"
    requirements.write_text("--no-index\n-e ./wheels/mylib-0.1-py3-none-any.whl\n")
    target = ensure_packages(tmp_path / "home", requirements)
    assert (target / "mylib" / "__init__.py").read_text() == "VALUE = 7\n"


def test_a_frozen_conda_file_url_is_named_with_the_fix(tmp_path: Path) -> None:
    # `pip freeze` in a conda environment writes `pkg @ file:///home/conda/feedstock_root/...`:
    # was pip's "Could not install packages due to an OSError: [Errno 2] No such file or directory"
    with pytest.raises(LoadError) as caught:
        plan(
            "certifi @ file:///home/conda/feedstock_root/build_artifacts/certifi_1/work/certifi\n"
            "mylib @ file:///croot/mylib_2/work\n",
            relax=False,
            versions_of=no_index,
            sources_of=no_index,
        )
    assert caught.value.message == (
        "requirements.txt: certifi @ "
        "file:///home/conda/feedstock_root/build_artifacts/certifi_1/work/certifi "
        "names a file of the machine it was frozen on (pip freeze in a conda environment): pin a "
        "version from the index instead (certifi==VERSION, or pip list --format=freeze); "
        "mylib @ file:///croot/mylib_2/work names a file of the machine it was frozen on (pip freeze in a "
        "conda environment): pin a version from the index instead (mylib==VERSION, or pip list "
        "--format=freeze)"
    )


def test_pips_error_keeps_the_reason_not_its_decoration() -> None:
    # was: "installing requirements.txt failed:       [end of output];   note: This error originates
    # from a subprocess, and is likely not a problem with pip.; ERROR: Failed to build ..." (the
    # reason, "Could not resolve host: github.com", left out)
    git = "git clone --filter=blob:none --quiet https://github.com/psf/x.git /tmp/pip-install-1/x_2"
    stderr = "\n".join(
        [
            "  error: subprocess-exited-with-error",
            "  ",
            f"  \u00d7 {git} did not run successfully.",
            "  \u2502 exit code: 128",
            "  \u2570\u2500> [1 lines of output]",
            "      fatal: unable to access 'https://github.com/psf/x.git/': "
            "Could not resolve host: github.com",
            "      [end of output]",
            "  ",
            "  note: This error originates from a subprocess, and is likely not a problem with pip.",
            f"ERROR: Failed to build 'x' when {git}",
        ]
    )
    assert pip_failure(stderr, 1) == (
        "fatal: unable to access 'https://github.com/psf/x.git/': Could not resolve host: github.com; "
        "ERROR: Failed to build 'x' when git clone --filter=blob:none --quiet https://github.com/psf/x.git "
        "/tmp/pip-install-1/x_2"
    )
    assert pip_failure("", 2) == "pip exited with status 2"
    # a warning of pip's (an index location of its configuration missing) is not why it failed
    missing = (
        "WARNING: Location 'file:///opt/wheels/x/' is ignored: it is neither a file nor a directory.\n"
        "ERROR: Could not find a version that satisfies the requirement x==1.0 (from versions: none)\n"
        "ERROR: No matching distribution found for x==1.0\n"
    )
    assert pip_failure(missing, 1) == (
        "ERROR: Could not find a version that satisfies the requirement x==1.0 (from versions: none); "
        "ERROR: No matching distribution found for x==1.0"
    )
    assert pip_failure("WARNING: only this\n", 1) == "WARNING: only this"
    # the line numbers of inferd's copy of the list, in a folder gone by then: not the user's
    listing = "/home/u/.inferd/envs/.installing-xbsw0npr/.requirements.txt"
    hashed = (
        f"mylib==0.1 from file:///p/wheels/mylib-0.1-py3-none-any.whl (from -r {listing} (line 3)):\n"
        f"ERROR: Invalid requirement: 'name: x': Expected end (from line 1 of {listing})\n"
    )
    assert pip_failure(hashed, 1) == (
        "mylib==0.1 from file:///p/wheels/mylib-0.1-py3-none-any.whl:; "
        "ERROR: Invalid requirement: 'name: x': Expected end"
    )


def test_the_index_is_asked_about_many_pins_at_once() -> None:
    # was: one `pip index versions` after another, about 1.3 s each: a `pip freeze` of 30 pins of
    # 2021 spent 41 s before pip (or the error naming them) came; one of 300, about 7 minutes
    arrived = threading.Barrier(4, timeout=20)

    def versions_of(name: str) -> list[Version]:
        arrived.wait()  # each of the four lookups waits for the other three: they run together
        return [Version("9.0")]

    checked = plan(
        "a==1.0\nb==1.0\nc==1.0\nd==1.0\n", relax=True, versions_of=versions_of, sources_of=no_index
    )
    assert checked.lines == ["a==9.0", "b==9.0", "c==9.0", "d==9.0"]  # in the file's order


def test_a_hashed_pin_is_checked_as_any_other() -> None:
    # pip-compile --generate-hashes continues each pin with its hashes: was each piece went to pip
    # as it was, so numpy==1.26.4 \ skipped the checks and pip installed a second numpy (shadowed
    # by inferd's, 60 MB) with no warning
    numpy = __import__("numpy").__version__
    text = (
        "--require-hashes\n"
        f"numpy==1.26.4 \\\n    --hash=sha256:{'a' * 64} \\\n    --hash=sha256:{'b' * 64}\n    # via pandas\n"
        f"mylib==0.1 \\\n    --hash=sha256:{'c' * 64}\n"
    )
    checked = plan(
        text,
        relax=False,
        versions_of=lambda name: [Version("0.1"), Version("1.26.4"), Version(numpy)],
        sources_of=no_index,
    )
    assert checked.lines == ["--require-hashes", f"mylib==0.1 --hash=sha256:{'c' * 64}"]
    assert checked.warnings == [
        f"requirements.txt: numpy==1.26.4 conflicts with numpy {numpy}, which inferd itself runs with; "
        "handlers import that version"
    ]


def test_an_extra_of_a_package_inferd_has_brings_the_extras_packages() -> None:
    # was: `requests[socks]` was met by inferd's requests and dropped, so PySocks never came and
    # the handler's `import socks` failed (as `uvicorn[standard]`, `fsspec[s3]`, `pandas[performance]`)
    requests = __import__("requests").__version__
    checked = plan(
        "requests[socks]\nrequests[socks]>=1.0\n", relax=False, versions_of=no_index, sources_of=no_index
    )
    assert checked.lines == [f"requests[socks]=={requests}", f"requests[socks]=={requests}"]
    assert checked.warnings == []
    # an extra whose packages inferd's environment has (or that the package does not have): nothing
    assert (
        plan("requests[no-such-extra]\n", relax=False, versions_of=no_index, sources_of=no_index).lines == []
    )


def test_a_comment_after_a_tab_is_a_comment() -> None:
    # pip's rule (whitespace, then #): was `numpy<2\t# old` not read as numpy<2, so it skipped the
    # checks and went to pip as it was
    numpy = Version(__import__("numpy").__version__)
    checked = plan("numpy<2\t# old\n", relax=False, versions_of=lambda name: [Version("1.26.4"), numpy])
    assert checked.lines == [] and len(checked.warnings) == 1


def test_every_package_the_index_does_not_have_is_named_in_one_error() -> None:
    # a conda environment's `pip freeze` pins conda's own packages: was pip's "No matching
    # distribution found for conda==4.10.3", one at a time, after every other pin was looked up
    def sources_of(name: str) -> list[Version]:
        raise NotOnIndex(name)

    text = "conda==4.10.3\nnavigator-updater==0.2.1\n"
    with pytest.raises(LoadError) as caught:
        plan(text, relax=True, versions_of=lambda name: [], sources_of=sources_of)
    assert caught.value.message == (
        "requirements.txt: conda==4.10.3: the index has no package conda (a conda package, or one of a "
        "private index: add its --extra-index-url line, or its wheel in the project with --find-links); "
        "navigator-updater==0.2.1: the index has no package navigator-updater (a conda package, or one "
        "of a private index: add its --extra-index-url line, or its wheel in the project with "
        "--find-links)"
    )
    # another index named in the file may have them: pip asks it
    private = plan(
        "--extra-index-url https://example.invalid/simple\n" + text,
        relax=False,
        versions_of=lambda name: [],
        sources_of=sources_of,
    )
    assert private.lines == [
        "--extra-index-url https://example.invalid/simple",
        "conda==4.10.3",
        "navigator-updater==0.2.1",
    ]


def test_a_module_inferds_environment_has_too_is_named(tmp_path: Path) -> None:
    # `attr` (not attrs), `enum34`, `typing`: the module is on sys.path after inferd's own packages
    # and the standard library, so handlers import those instead: was said nowhere
    project = tmp_path / "project"
    folder = project / "wheels"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "backports_all-1.0-py3-none-any.whl", "w") as wheel:
        for module in ("numpy/__init__.py", "enum/__init__.py", "typing.py", "backports_all_own.py"):
            wheel.writestr(module, "")
        info = "backports_all-1.0.dist-info"
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: backports-all\nVersion: 1.0\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")
    requirements = project / "requirements.txt"
    requirements.write_text("--no-index\n./wheels/backports_all-1.0-py3-none-any.whl\n")
    said: list[str] = []
    ensure_packages(tmp_path / "home", requirements, warn=said.append)
    assert said == [
        "requirements.txt: backports-all installs the module enum, which handlers import from the "
        "standard library instead",
        "requirements.txt: backports-all installs the module numpy, which handlers import from "
        "numpy, which inferd runs with, instead",
        "requirements.txt: backports-all installs the module typing, which handlers import from the "
        "standard library instead",
    ]


@pytest.mark.parametrize(
    "line", ["../mylib", "-e ../mylib", "--find-links=../wheels", "mylib @ file:../mylib"]
)
def test_a_local_package_outside_the_project_is_refused_also_by_validate(tmp_path: Path, line: str) -> None:
    # was: `inferd test` and `inferd validate` passed, and `inferd deploy` (which copies the folder
    # alone) failed with pip's "../mylib; ^; Hint: It looks like a path. File '../mylib' does not exist."
    (tmp_path / "mylib").mkdir()
    (tmp_path / "wheels").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: p\n  predictor:\n    path: predictor.py\n"
    )
    (project / "predictor.py").write_text("def predict(sample, metadata):\n    return 1\n")
    (project / "requirements.txt").write_text(f"{line}\nmylib\n")
    expected = (
        f"requirements.txt: {line} is outside the project folder, which is all a deploy copies: move it "
        "into the project"
    )
    with pytest.raises(LoadError) as caught:
        packages_dir(tmp_path / "home", project / "requirements.txt")
    assert caught.value.message == expected
    result = CliRunner().invoke(cli, ["validate", str(project)])
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split())


def test_a_freezes_pins_are_asked_about_in_a_few_pip_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    # was: a pip process per pin (0.7 s of CPU each): 30 pins of a 2021 freeze took 41 s, one after
    # another, and 32 s eight at a time on two busy cores; in a few processes, 8.6 s (asks the index)
    names = ["absl-py", "appdirs", "astunparse", "backcall", "bleach", "cachetools"]
    started: list[list[str]] = []
    run = subprocess.run

    def counted(command: list[str], *args: Any, **kwargs: Any) -> Any:
        started.append(command)
        return run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counted)
    found = package_index.many_wheel_versions(names)
    assert len(started) <= package_index.MANY_PROCESSES < len(names)
    assert set(found) == set(names) and all(found.values())
    package_index._asked.cache_clear()
    assert found["appdirs"] == package_index.wheel_versions("appdirs")  # as `pip index versions` says
