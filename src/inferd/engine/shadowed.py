"""Packages pip put beside a project's requirements that inferd's own environment already has.

``pip install --target`` ignores the packages of the environment it runs in, so a requirement
depending on numpy (``numexpr``) brings a second numpy, 70 MB (a torch, gigabytes), that
replicas never import: inferd's own packages come first on ``sys.path``. They are removed once
pip is done; one in another version than inferd's is a warning, as the package that asked for
it gets inferd's.
"""

from __future__ import annotations

import csv
import importlib.machinery
import importlib.metadata
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


def remove_shadowed(target: Path, installed: Callable[[str], Version | None]) -> list[str]:
    """Remove from ``target`` each distribution ``installed`` (inferd's environment) has; the
    warnings for those pip brought in another version."""
    warnings = []
    for info in sorted(target.glob("*.dist-info")):
        distribution = importlib.metadata.PathDistribution(info)
        name = distribution.metadata["Name"]
        have = installed(name) if name else None
        if have is None:
            continue
        try:
            same = Version(distribution.version) == have
        except InvalidVersion:
            same = False
        if not same:
            warnings.append(
                f"requirements.txt: pip brought {canonicalize_name(name)} {distribution.version}; handlers "
                f"import {canonicalize_name(name)} {have}, which inferd runs with"
            )
        _remove(target, info, distribution)
    return warnings


def _recorded(distribution: importlib.metadata.Distribution) -> list[str]:
    """The paths in ``distribution``'s RECORD, as written. Not ``distribution.files``: from
    Python 3.12 on it leaves out a path that is not where RECORD says, as each script is."""
    text = distribution.read_text("RECORD") or ""
    return [row[0] for row in csv.reader(text.splitlines()) if row]


def _remove(target: Path, info: Path, distribution: importlib.metadata.Distribution) -> None:
    """Remove the files ``distribution`` installed in ``target`` (its RECORD), and the folders
    that leaves empty; never a file outside ``target``."""
    root = target.resolve()
    folders: set[Path] = set()
    for entry in _recorded(distribution):
        parts = Path(entry).parts
        # pip --target records scripts from the lib folder of its scheme, then moves bin/ in
        path = (target / Path(*parts[2:]) if parts[:3] == ("..", "..", "bin") else target / entry).resolve()
        if root not in path.parents:
            continue
        path.unlink(missing_ok=True)
        folders.update(parent for parent in path.parents if root in parent.parents)
    shutil.rmtree(info, ignore_errors=True)
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):  # deepest first
        if folder.is_dir() and not any(folder.iterdir()):
            os.rmdir(folder)


def shadowed_modules(target: Path) -> list[str]:
    """A warning for each top-level module of the distributions in ``target`` that the standard
    library or inferd's environment has too, which come first on replicas' ``sys.path``."""
    paths = sysconfig.get_paths()
    base = list(dict.fromkeys(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")))
    base += [entry for entry in sys.path if entry.endswith("lib-dynload")]
    owners = importlib.metadata.packages_distributions()
    warnings = []
    for info in sorted(target.glob("*.dist-info")):
        distribution = importlib.metadata.PathDistribution(info)
        for module in sorted(_top_level(target, distribution)):
            if module in sys.builtin_module_names:
                found = "the standard library"
            else:
                spec = importlib.machinery.PathFinder.find_spec(module, base)
                if spec is None or spec.origin is None:  # absent, or a namespace package (google)
                    continue
                names = owners.get(module)
                found = f"{', '.join(names)}, which inferd runs with," if names else "the standard library"
            warnings.append(
                f"requirements.txt: {distribution.metadata['Name']} installs the module {module}, which "
                f"handlers import from {found} instead"
            )
    return warnings


def _top_level(target: Path, distribution: importlib.metadata.Distribution) -> set[str]:
    """The importable top-level names ``distribution`` installed in ``target``."""
    modules = set()
    for entry in distribution.files or []:
        parts = Path(entry).parts
        if (
            not parts
            or parts[0] in ("..", "__pycache__", "bin")
            or parts[0].endswith((".dist-info", ".data"))
        ):
            continue
        if len(parts) > 1 and (target / parts[0] / "__init__.py").is_file():
            modules.add(parts[0])
        elif len(parts) == 1 and parts[0].endswith((".py", ".so")):
            modules.add(parts[0].split(".", 1)[0])
    return modules
