"""Durable writes: the bytes of files and the names of folders on the disk before a record names
them, so that a power cut never leaves ``state.json`` naming a snapshot the disk lost."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path


def sync_entries(folder: Path) -> None:
    """Make the names in ``folder`` durable (a rename into it, a file created there): a file's
    ``fsync`` writes its bytes, not the folder entry that names it (fsync(2))."""
    try:
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a file system that cannot open folders: it has nothing more to write
    try:
        os.fsync(handle)
    except OSError:
        pass  # EINVAL: a file system (tmpfs, some FUSE) that syncs nothing
    finally:
        os.close(handle)


def sync_files(paths: Collection[Path]) -> None:
    """Write the bytes of ``paths`` to the disk (``fsync``) before a record names them."""
    for path in paths:
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
