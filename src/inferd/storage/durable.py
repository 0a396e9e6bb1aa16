"""Durable writes: the bytes of files and the names of folders on the disk before a record names
them, so that a power cut never leaves ``state.json`` naming a snapshot the disk lost."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Collection
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)


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


# Past this many files, one syncfs(2) of their file system instead of an fsync each: a snapshot
# of 2,000 small files spent 3.5 of its 6.0 s in their fsyncs (1.7 ms apiece).
MANY_FILES = 64


def sync_file_systems(paths: Collection[Path]) -> None:
    """Write out the file systems ``paths`` are on (``syncfs``), each once: not sync(2), which
    waits for every disk of the machine (a deploy stalled behind a copy to another disk)."""
    devices: set[int] = set()
    for path in paths:
        device = os.stat(path).st_dev
        if device in devices:
            continue
        devices.add(device)
        handle = os.open(path, os.O_RDONLY)
        try:
            if _LIBC.syncfs(handle) != 0:
                os.sync()  # syncfs refused (it never is on Linux since 2.6.39): every file system
        finally:
            os.close(handle)


def sync_files(paths: Collection[Path]) -> bool:
    """Write the bytes of ``paths`` to the disk (``fsync``) before a record names them.

    True when that was a ``syncfs`` of their file system (many files), which wrote the folders'
    entries too: nothing is left for ``sync_entries`` to do for them."""
    if len(paths) > MANY_FILES:
        sync_file_systems(paths)  # Linux waits for the writes to end (syncfs(2))
        return True
    for path in paths:
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    return False
