"""The projects the Python client (``inferd.sdk``) writes under ``$INFERD_HOME/workspace/``, one
per deployment: ``inferd prune`` removes those of deployments that are gone (``operator/prune.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from inferd.logfiles import folder_bytes
from inferd.operator.state import State, StateError
from inferd.storage import CREATED_MARK


def forget_workspaces(home: Path, deployments: set[str]) -> list[tuple[Path, int]]:
    """Remove the projects the Python client wrote (``workspace/<deployment>``: the model copies
    and handlers) of deployments that are gone, with what a deploy it could not finish set aside.

    Only a project marked as deployed to this home's operator (``CREATED_MARK``, written by
    ``inferd.sdk``): one deployed to a Ray cluster is not in this home's state, and it is left, as
    is one the client is deploying now (it holds ``workspace/.locks/<deployment>``). Returns each
    project removed, with the bytes it freed.
    """
    removed: list[tuple[Path, int]] = []
    workspace = home / "workspace"
    try:
        folders = sorted(workspace.iterdir())
    except OSError:
        return removed
    for folder in folders:
        name = folder.name
        if name.startswith(".") or name in deployments or folder.is_symlink():
            continue
        if not (folder / CREATED_MARK).is_file():
            continue
        with _unless_deploying(workspace, name) as free:
            # (read again once the lock is ours: a client that held it may have deployed it since
            # ``deployments`` was read, which `inferd prune` without an operator does first)
            if not free or _recorded(home, name):
                continue
            freed = 0
            for path in (folder, workspace / ".previous" / name):
                if path.is_dir() and not path.is_symlink():
                    freed += folder_bytes(path)
                    shutil.rmtree(path, ignore_errors=True)
            removed.append((folder, freed))
    return removed


def _recorded(home: Path, deployment: str) -> bool:
    """Whether ``deployment`` is in the state file now (True when that cannot be read)."""
    try:
        return deployment in State(home).load().deployments
    except StateError:
        return True


@contextlib.contextmanager
def _unless_deploying(workspace: Path, deployment: str) -> Iterator[bool]:
    """Hold the Python client's lock of ``deployment`` while the block runs: False when a client
    holds it (deploying)."""
    locks = workspace / ".locks"
    try:
        locks.mkdir(exist_ok=True)
        handle = os.open(locks / deployment, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(handle)  # the lock goes with it
