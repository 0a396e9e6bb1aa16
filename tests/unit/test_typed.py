"""Users type-check their scripts against inferd: every package they import says it is typed."""

from __future__ import annotations

import tomllib
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_every_importable_package_ships_its_py_typed_marker() -> None:
    # Was: `from cortex import Client` (README, "Deploying from Python") failed `mypy --strict`
    # of the user's own script: "module is installed, but missing library stubs or py.typed
    # marker", while `from inferd import Client`, the same class, passed.
    packages = sorted(path.parent.name for path in SRC.glob("*/__init__.py"))
    assert packages == ["cortex", "inferd"]
    data = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package in packages:
        assert (SRC / package / "py.typed").is_file(), package
        assert "py.typed" in data.get(package, []), package
