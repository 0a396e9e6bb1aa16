"""inferd as users install it (`pip install 'inferd[all]'`, from a wheel), not the editable
install of the checkout: the wheel holds every file the packages read at run time, and brings
what inferd runs itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from email.parser import Parser
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT, built_wheel, package_sources, wheel_contents

COMMANDS = {"inferd": "inferd.cli.main:main", "cortex": "inferd.cli.main:main"}
# The pips before `pip index versions --json` (25.2), which inferd asks about a project's pins
# (engine/package_index.py): the wheels of 23.3.2 to 25.1 have no such option. A venv made by
# Python 3.11.7 comes with 23.2.1.
PIPS_WITHOUT_JSON = ["23.2.1", "24.0", "25.1"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The wheel `pip install .` builds from the checkout's files."""
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    return built_wheel(source, tmp_path_factory.mktemp("dist"))


def test_the_wheel_holds_every_file_of_the_packages_and_both_commands(wheel: dict[str, bytes]) -> None:
    # The dashboard's page, script and style (read from beside dashboard.py), the py.typed
    # markers, the `cortex` package (Cortex's client, and cortex.lib.log for its handlers); no
    # tests, models or examples.
    files, commands = wheel_contents(wheel)
    assert files == package_sources()
    assert "inferd/operator/static/index.html" in files
    assert commands == COMMANDS


def test_the_wheel_carries_the_license_its_metadata_names(wheel: dict[str, bytes]) -> None:
    # Was: the metadata said Apache-2.0 and no license text shipped, in the wheel or the checkout.
    (name,) = [name for name in wheel if name.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel[name].decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    (text,) = [wheel[name] for name in wheel if name.endswith(".dist-info/licenses/LICENSE")]
    assert text == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in text and b"Version 2.0, January 2004" in text


def test_installing_inferd_brings_a_pip_that_answers_what_inferd_asks_it(wheel: dict[str, bytes]) -> None:
    # Was: `pip install inferd` in a new venv kept its pip 23.2.1, whose `pip index versions`
    # has no --json: a 2019 pin (scikit-learn==0.21.3) was not named with the nearest installable
    # version, --relax-pins relaxed nothing, and pip failed building it from source instead.
    (name,) = [name for name in wheel if name.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel[name].decode()).get_all("Requires-Dist") or []
    (pip,) = [r for r in map(Requirement, requires) if r.name == "pip" and r.marker is None]
    assert list(pip.specifier.filter(PIPS_WITHOUT_JSON)) == []
    assert pip.specifier.contains(version("pip"))
    usage = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--json" in usage.stdout
