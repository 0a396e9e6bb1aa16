"""Why deployed code misses a file the user's project folder holds: what a deploy leaves out.

``inferd serve`` and ``inferd test`` run the project folder itself; a deploy runs a snapshot of
it, which holds neither hidden files and folders (Cortex's project zip left them out too), nor
folders such as ``venv`` and ``node_modules``, nor linked folders (files travel, and the files
that links name, but a link to a folder could name ``/``), nor what lies beside the folder. A
replica that fails to load on such a file adds the reason to its error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from inferd.errors import LoadError
from inferd.storage import left_out_part, left_out_reason


def left_out_hint(exc: BaseException, project_root: Path, shown_root: Path | None) -> str:
    """`` (why)`` when ``exc`` (a load failure) is about a file or module the user's folder
    ``shown_root`` holds but the snapshot ``project_root`` left out, else ``""``."""
    try:
        return _hint(exc, project_root, shown_root)
    except Exception:  # a hint that fails must not hide the error it explains
        return ""


def _hint(exc: BaseException, project_root: Path, shown_root: Path | None) -> str:
    missing = exc.__cause__ if isinstance(exc, LoadError) else exc
    if shown_root is None:
        return ""
    if isinstance(missing, ModuleNotFoundError) and missing.name:
        top = missing.name.partition(".")[0]
        return _linked_folder(shown_root, Path(top)) or _module_beside(project_root, shown_root, top)
    if not isinstance(missing, FileNotFoundError) or missing.filename is None:
        return ""
    path = os.path.normpath(os.path.join(project_root, os.fsdecode(missing.filename)))
    relative = os.path.relpath(path, project_root)
    if relative.split(os.sep, 1)[0] == "..":  # beside the project: `inferd serve` ran in the folder itself
        if not os.path.exists(os.path.normpath(os.path.join(shown_root, relative))):
            return ""
        return (
            f" ({relative} is beside {shown_root}, not in it, and a deploy runs a copy of the project "
            "folder alone: move it into the project)"
        )
    part = left_out_part(shown_root, Path(relative))
    if part is not None:
        if not (shown_root / relative).exists():
            return ""
        return f" ({relative} is in {shown_root}, but {left_out_reason(part)})"
    return _linked_folder(shown_root, Path(relative))


def _module_beside(project_root: Path, shown_root: Path, top: str) -> str:
    """The hint for a module ``top`` that a ``sys.path`` entry out of the project (``..``, made
    relative to the working folder or to ``__file__``) finds beside the user's folder."""
    for entry in sys.path:
        if os.path.isabs(entry) and not entry.startswith(str(project_root.parent)):
            continue  # an installed package's folder, not one the project named
        relative = os.path.relpath(os.path.normpath(os.path.join(project_root, entry)), project_root)
        if relative.split(os.sep, 1)[0] != "..":
            continue
        beside = os.path.normpath(os.path.join(shown_root, relative))
        if os.path.isfile(os.path.join(beside, f"{top}.py")) or os.path.isdir(os.path.join(beside, top)):
            return (
                f" ({top} is in {beside}, beside {shown_root}, not in it, and a deploy runs a copy of the "
                "project folder alone: move it into the project)"
            )
    return ""


def _linked_folder(shown_root: Path, relative: Path) -> str:
    """The hint for the first part of ``relative`` that is a link to a folder in ``shown_root``."""
    for count in range(1, len(relative.parts) + 1):
        part = Path(*relative.parts[:count])
        candidate = shown_root / part
        if candidate.is_symlink() and candidate.is_dir():
            return (
                f" ({part} is a link to a folder in {shown_root}; a deploy copies the project's files, "
                "and the files that links name, but no linked folder: move the folder into the project)"
            )
    return ""
