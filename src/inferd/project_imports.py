"""A project's modules in the caller's own process (``load_api``, ``inferd test``), as a replica
has them: its modules are its own, not the caller's of the same name (a notebook's ``utils.py``),
and they are read as their source is now (an edit saved within the second too); the caller keeps
its own modules once the project has loaded.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferd.errors import UsageError
from inferd.handler.loader import FreshSourceLoader
from inferd.storage import inferd_home

INFERD_PACKAGE = Path(__file__).resolve().parent

# What loading the last project added: the modules it imported from its own folders (its
# handlers' neighbours) and its folders on ``sys.path``. Forgotten before the next load, so that
# two projects with a ``features.py`` each (or one edited since) get their own, as each replica
# imports its own.
_PROJECT_MODULES: set[str] = set()
_PROJECT_PATHS: list[str] = []
# Every project folder loaded: their modules are read as their source is now (``_fresh_sources``:
# a bytecode cache checked against the source's bytes), as the handler file is.
_PROJECT_FOLDERS: set[Path] = set()


@contextlib.contextmanager
def project_imports(folders: list[Path]) -> Iterator[None]:
    """While a project of ``folders`` loads: the modules of the project loaded before are
    forgotten, its folders go where its code puts them on ``sys.path``, and its modules are its
    own; afterwards the caller has its own modules back, and the project's are remembered."""
    for name in _PROJECT_MODULES:
        sys.modules.pop(name, None)
    _PROJECT_MODULES.clear()
    # put back by the Predictor where a replica has them: this project's modules win
    for folder in [*_PROJECT_PATHS, *map(str, folders)]:
        while folder in sys.path:
            sys.path.remove(folder)
    _compile_from_source(folders)
    # The caller's own modules named as a module of the project (a notebook's `utils.py` beside
    # the project's): set aside while the project loads, so that its code imports its own, as
    # a replica does, then put back, so that the caller keeps theirs.
    tops = _module_names(folders)
    aside = {
        name: module
        for name, module in sys.modules.items()
        if name.partition(".")[0] in tops and _callers_own(module, folders)
    }
    for name in aside:
        del sys.modules[name]
    paths_before, modules_before = set(sys.path), set(sys.modules)
    first = _ProjectFirst(tops, folders)
    sys.meta_path.insert(0, first)
    try:
        yield
    finally:
        sys.meta_path.remove(first)
        _PROJECT_PATHS[:] = [path for path in sys.path if path not in paths_before]
        _PROJECT_MODULES.update(
            name for name in set(sys.modules) - modules_before if _inside(sys.modules.get(name), folders)
        )
        _PROJECT_MODULES.difference_update(aside)
        sys.modules.update(aside)


def _compile_from_source(folders: list[Path]) -> None:
    """Import the modules of ``folders`` (and their subfolders) from their source from now on.

    Python's bytecode cache takes a source of the same size and mtime in whole seconds for
    unchanged, so a neighbour saved again within the second (a notebook writing ``features.py``
    anew, then ``load_api``) kept its old code. Only in this process, and only project folders.
    """
    if _fresh_sources not in sys.path_hooks:
        sys.path_hooks.insert(0, _fresh_sources)
    _PROJECT_FOLDERS.update(folders)
    for path in list(sys.path_importer_cache):  # finders made before: made again, by the hook
        if _under_project(path):
            del sys.path_importer_cache[path]


def _fresh_sources(path: str) -> importlib.machinery.FileFinder:
    """``sys.path_hooks`` entry: a finder for a project folder whose ``.py`` files compile fresh."""
    if not path or not os.path.isdir(path) or not _under_project(path):
        raise ImportError  # the next hook's (a zip file's, the standard finder)
    return importlib.machinery.FileFinder(
        path,
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (FreshSourceLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    )


def _under_project(path: str) -> bool:
    """Whether ``path`` is a project folder or one of its subfolders, not hidden (a ``.venv``
    inside the project, which no deploy sends) nor installed packages."""
    folder = Path(path).resolve()
    if any(folder == place or place in folder.parents for place in _installed()):
        return False
    return any(
        folder == root or (root in folder.parents and not _hidden(folder.relative_to(root)))
        for root in _PROJECT_FOLDERS
    )


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


class _ProjectFirst(importlib.abc.MetaPathFinder):
    """``sys.meta_path`` finder while a project loads: a module named as one of the project's
    (``tops``) is looked for on ``sys.path`` without the caller's own folders (a notebook's),
    which no replica's ``sys.path`` holds. The handler's folder comes last there, so a handler
    in a subfolder imported the notebook's ``utils.py`` in place of its neighbour."""

    def __init__(self, tops: set[str], folders: list[Path]) -> None:
        self.tops = tops
        self.folders = folders
        try:  # the caller's, which a relative entry (`sys.path.append(".")`) names
            self.cwd: str | None = os.getcwd()
        except FileNotFoundError:  # removed since the shell entered it (`inferd test /abs/project`)
            self.cwd = None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if path is not None or name not in self.tops:
            return None  # a submodule (its package's path) or no project's name: as before
        entries = [entry for entry in sys.path if not self._callers(entry)]
        return importlib.machinery.PathFinder.find_spec(name, entries)

    def _callers(self, entry: str) -> bool:
        if not entry:  # the working directory: the project's while it loads
            return False
        # where the entry's finder looks (one made before took "." as the folder it was then)
        finder = sys.path_importer_cache.get(entry)
        looked = getattr(finder, "path", None)
        where = looked if isinstance(looked, str) else entry
        if self.cwd is None and not os.path.isabs(where):
            return False  # a folder inside the removed working folder: nothing is imported from it
        folder = Path(self.cwd or "/", where).resolve()
        places = [*self.folders, *_installed(), INFERD_PACKAGE.parent]
        with contextlib.suppress(UsageError):  # (a home the user's environment misnames)
            places.append(inferd_home())  # the packages of a project's requirements.txt
        return not any(folder == place or place in folder.parents for place in places)


def _module_names(folders: list[Path]) -> set[str]:
    """The top-level modules the project's ``folders`` hold (``utils`` for ``utils.py`` or ``utils/``)."""
    names: set[str] = set()
    for folder in folders:
        with contextlib.suppress(OSError):
            names.update(
                path.stem if path.suffix == ".py" else path.name
                for path in folder.iterdir()
                if path.suffix == ".py" or (path / "__init__.py").is_file()
            )
    return names


def _callers_own(module: Any, folders: list[Path]) -> bool:
    """Whether ``module`` is the caller's own: from a file neither installed nor the project's."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or _inside(module, folders):
        return False
    path = Path(file).resolve()
    return not any(path.is_relative_to(installed) for installed in _installed())


@functools.cache
def _installed() -> tuple[Path, ...]:
    """Where the standard library, installed packages and inferd are: their modules are no user's."""
    paths = sysconfig.get_paths()
    found = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return (*found, INFERD_PACKAGE, INFERD_PACKAGE.parent / "cortex")  # (an editable install's)


def _inside(module: Any, folders: list[Path]) -> bool:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return False
    path = Path(file).resolve()
    return any(folder in path.parents for folder in folders)
