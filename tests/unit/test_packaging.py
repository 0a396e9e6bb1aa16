"""inferd as users install it (`pip install 'inferd[all]'`, from a wheel), not the editable
install of the checkout: the wheel holds every file the packages read at run time."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import ROOT, built_wheel, package_sources, wheel_contents

COMMANDS = {"inferd": "inferd.cli.main:main", "cortex": "inferd.cli.main:main"}


def test_the_wheel_holds_every_file_of_the_packages_and_both_commands(tmp_path: Path) -> None:
    # The dashboard's page, script and style (read from beside dashboard.py), the py.typed
    # markers, the `cortex` package (Cortex's client, and cortex.lib.log for its handlers); no
    # tests, models or examples.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    (tmp_path / "dist").mkdir()
    files, commands = wheel_contents(built_wheel(source, tmp_path / "dist"))
    assert files == package_sources()
    assert "inferd/operator/static/index.html" in files
    assert commands == COMMANDS
