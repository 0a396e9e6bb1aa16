"""Cortex's ``/mnt/project``, for projects read from ``cortex.yaml``.

Cortex copied the project into ``/mnt/project/`` in every replica, and its docs told handlers
to read their files there (``open('/mnt/project/config.json')`` in
``docs/dependencies/python-packages.md``). inferd serves a project from its own folder, so a
replica of a ``cortex.yaml`` project maps paths under ``/mnt/project`` to that folder in the
functions Python code reaches files through: ``open`` (``builtins`` and ``io``), ``os``'s
functions taking paths (``PATH_FUNCTIONS``, ``TWO_PATH_FUNCTIONS``), and ``sys.path`` entries
(an import hook). What builds on them follows: ``os.path``, ``os.makedirs``, ``os.walk``,
``pathlib``, ``glob``, ``shutil``, and libraries that open files from Python (``json``,
``pickle``, NumPy, pandas, joblib, Pillow, torch); the folder is writable, as Cortex's was.
Native code that opens a path itself (an ONNX session or SavedModel loaded by a handler) does
not; a relative path works everywhere, since the project folder is the working directory.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MOUNT = "/mnt/project"

_root: str | None = None  # the project folder served by this process, once installed


def mapped(path: Any) -> Any:
    """``path`` with a leading ``/mnt/project`` replaced by the project folder (else unchanged)."""
    if _root is None or isinstance(path, int):
        return path
    try:
        raw = os.fspath(path)
    except TypeError:
        return path
    if isinstance(raw, bytes):
        mount, root = MOUNT.encode(), os.fsencode(_root)
        if raw == mount or raw.startswith(mount + b"/"):
            return root + raw[len(mount) :]
        return path
    if raw == MOUNT or raw.startswith(MOUNT + "/"):
        return _root + raw[len(MOUNT) :]
    return path


def _wrap(function: Callable[..., Any], keyword: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args:
            args = (mapped(args[0]), *args[1:])
        elif keyword in kwargs:
            kwargs[keyword] = mapped(kwargs[keyword])
        return function(*args, **kwargs)

    wrapper.__inferd_mount__ = True  # type: ignore[attr-defined]
    return wrapper


def _wrap_two(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        return function(mapped(src), mapped(dst), *args, **kwargs)

    wrapper.__inferd_mount__ = True  # type: ignore[attr-defined]
    return wrapper


# What Cortex's project zip left out, so its /mnt/project never listed them
# (docs/dependencies/python-packages.md): bytecode, dotfiles and dot folders (inferd's own
# ``.inferd-files.json`` too), and ``cortex.yaml`` at the top.
BYTECODE = (".pyc", ".pyo", ".pyd")


def _shown(name: str | bytes, top: bool) -> bool:
    text = os.fsdecode(name)
    return not (text.startswith(".") or text.endswith(BYTECODE) or (top and text == "cortex.yaml"))


def _listing(path: Any) -> bool | None:
    """For a path under ``/mnt/project``: whether it is the top (else None: not a mapped path)."""
    target = mapped(path)
    if target is path or _root is None:
        return None
    return os.path.normpath(os.fsdecode(target)) == _root


class _Entries:
    """``os.scandir``'s iterator with the entries Cortex did not copy left out (and its ``with``)."""

    def __init__(self, entries: Any, top: bool) -> None:
        self._entries, self._top = entries, top

    def __iter__(self) -> _Entries:
        return self

    def __next__(self) -> Any:
        while True:
            entry = next(self._entries)
            if _shown(entry.name, self._top):
                return entry

    def __enter__(self) -> _Entries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._entries.close()


def _wrap_listing(function: Callable[..., Any], scandir: bool) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(path: Any = ".") -> Any:
        top = _listing(path)
        found = function(mapped(path))
        if top is None:
            return found
        if scandir:
            return _Entries(found, top)
        return [name for name in found if _shown(name, top)]

    wrapper.__inferd_mount__ = True  # type: ignore[attr-defined]
    return wrapper


# ``os`` functions taking a path first (and its keyword name); ``os.makedirs``, ``os.walk``,
# ``os.path``, ``shutil`` and ``tempfile`` reach files through these.
PATH_FUNCTIONS = (
    ("open", "path"),
    ("stat", "path"),
    ("lstat", "path"),
    ("access", "path"),
    ("mkdir", "path"),
    ("rmdir", "path"),
    ("remove", "path"),
    ("unlink", "path"),
    ("chmod", "path"),
    ("utime", "path"),
    ("truncate", "path"),
    ("readlink", "path"),
    ("chdir", "path"),
    # shutil.copy2/copystat/copytree copy extended attributes and owners through these
    ("listxattr", "path"),
    ("getxattr", "path"),
    ("setxattr", "path"),
    ("removexattr", "path"),
    ("chown", "path"),
    ("lchown", "path"),
    ("statvfs", "path"),
    ("pathconf", "path"),
    ("mkfifo", "path"),
    ("mknod", "path"),
)
# ``os`` functions listing a folder: they leave out what Cortex did not copy (``_shown``)
LISTINGS = ("listdir", "scandir")
# ``os`` functions taking two paths (``src``, ``dst``): both are mapped
TWO_PATH_FUNCTIONS = ("rename", "replace", "link", "symlink")


def _path_hook() -> Callable[[str], Any]:
    """A ``sys.path`` hook for entries under ``/mnt/project`` (``sys.path.append('/mnt/project/src')``):
    the import system reads folders through its own copy of ``os``, so it is told the real folder."""
    from importlib import machinery

    files = machinery.FileFinder.path_hook(
        (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
        (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
    )

    def finder(entry: str) -> Any:
        target = mapped(entry)
        if target == entry:
            raise ImportError("not under /mnt/project")
        return files(target)

    finder.__inferd_mount__ = True  # type: ignore[attr-defined]
    return finder


def install(project_root: Path) -> None:
    """Map ``/mnt/project`` to ``project_root`` in this process (idempotent; the last root wins)."""
    global _root
    _root = str(project_root.resolve())
    if getattr(builtins.open, "__inferd_mount__", False):
        return
    opener = _wrap(builtins.open, "file")
    builtins.open = opener
    io.open = opener
    wrappers = [
        (name, _wrap(getattr(os, name), keyword)) for name, keyword in PATH_FUNCTIONS if hasattr(os, name)
    ]
    wrappers += [(name, _wrap_listing(getattr(os, name), name == "scandir")) for name in LISTINGS]
    wrappers += [(name, _wrap_two(getattr(os, name))) for name in TWO_PATH_FUNCTIONS if hasattr(os, name)]
    for name, wrapper in wrappers:
        original = getattr(os, name)
        setattr(os, name, wrapper)
        # Code asks ``os.stat in os.supports_fd`` (shutil.rmtree's safe version, at its import):
        # the wrapper takes what the function took.
        for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks):
            if original in supports:
                supports.add(wrapper)
    sys.path_hooks.insert(0, _path_hook())
    for entry in [e for e in sys.path_importer_cache if mapped(e) != e]:
        del sys.path_importer_cache[entry]
