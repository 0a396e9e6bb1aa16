"""pip run for a project's requirements.txt: what its failure says, and what a hung pip leaves."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest

from inferd.engine import pip_run
from inferd.errors import LoadError


def _wheel(folder: Path, name: str, version: str, *requires: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        wheel.writestr(f"{info}/METADATA", metadata + "".join(f"Requires-Dist: {r}\n" for r in requires))
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


def _failure(tmp_path: Path, lines: list[str]) -> str:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(LoadError) as caught:
        pip_run.pip_install(scratch, lines, tmp_path)
    assert not scratch.exists()
    return caught.value.message


@pytest.mark.parametrize("folder", ["home", "Jane Doe"])
def test_a_dependency_conflict_says_which_packages_conflict(tmp_path: Path, folder: str) -> None:
    # was: "installing requirements.txt failed: ERROR: Cannot install -r /home/u/.inferd/envs/
    # .installing-x/.requirements.txt (line 3) and -r ... (line 4) because these package versions have
    # conflicting dependencies.; ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/...":
    # neither package named (line numbers of inferd's copy of the list), nor the conflict (pip's
    # --quiet left out "The conflict is caused by:"). And in a home whose path has a space
    # (/home/Jane Doe/.inferd, or a CI job's TMPDIR), the list's path was left in the message.
    base = tmp_path / folder
    _wheel(base / "wheels", "aaa", "1.0", "ccc==1.0")
    _wheel(base / "wheels", "bbb", "1.0", "ccc==2.0")
    _wheel(base / "wheels", "ccc", "1.0")
    _wheel(base / "wheels", "ccc", "2.0")
    message = _failure(base, ["--no-index", "--find-links ./wheels", "aaa", "bbb"])
    assert "aaa 1.0 depends on ccc==1.0" in message
    assert "bbb 1.0 depends on ccc==2.0" in message
    assert ".requirements.txt" not in message, message


def test_an_index_that_does_not_answer_is_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: "ERROR: Could not find a version that satisfies the requirement x==1.0 (from versions:
    # none); ERROR: No matching distribution found for x==1.0": as if the index had no such
    # package, pip's warning that it could not reach the index being left out
    monkeypatch.setenv("PIP_RETRIES", "1")  # its default is 5, each said
    message = _failure(tmp_path, ["--index-url http://127.0.0.1:1/simple", "inferd-review-absent==1.0"])
    assert "Connection refused" in message
    assert "No matching distribution found for inferd-review-absent==1.0" in message


def test_a_hash_mismatch_says_so(tmp_path: Path) -> None:
    # was: "aaa==1.0 from file:///...:; Expected sha256 000...; Got a37...": pip's line saying
    # what that is (THESE PACKAGES DO NOT MATCH THE HASHES) cut off
    _wheel(tmp_path / "wheels", "aaa", "1.0")
    message = _failure(
        tmp_path, ["--no-index", "--find-links ./wheels", f"aaa==1.0 --hash=sha256:{'0' * 64}"]
    )
    assert "DO NOT MATCH THE HASHES" in message
    assert f"Expected sha256 {'0' * 64}" in message


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_hung_build_is_killed_with_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: past the timeout pip was killed, but not the build it ran (a setup.py waiting on a
    # server that never answers): it ran on, orphaned, after the deploy had failed
    mark = tmp_path / "build.pid"
    package = tmp_path / "slow"
    package.mkdir()
    (package / "pyproject.toml").write_text(
        "[build-system]\nrequires = []\nbuild-backend = 'backend'\nbackend-path = ['.']\n"
    )
    (package / "backend.py").write_text(
        "import os, time\n"
        "def get_requires_for_build_wheel(config_settings=None):\n"
        f"    open({str(mark)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(300)\n"
        "    return []\n"
    )
    monkeypatch.setattr(pip_run, "PIP_TIMEOUT", 20)
    system_temporary = tmp_path / "tmp"  # was: pip's build folders stayed in /tmp once it was killed
    system_temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_temporary))
    message = _failure(tmp_path, ["--no-index", "./slow"])
    assert list(system_temporary.iterdir()) == []
    assert message == "installing requirements.txt took longer than 20s"
    assert mark.exists(), "the build did not start within the timeout"
    pid = int(mark.read_text())
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _running(pid)
    if alive:
        os.kill(pid, 9)
    assert not alive
