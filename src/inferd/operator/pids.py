"""Which process is the operator (or its supervisor) of an ``INFERD_HOME``: ``operator.json``
names pids, and after a reboot one may belong to another process, another home's operator
included; the CLI must never signal or wait on that one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from inferd.procfs import running


def is_operator(pid: int, home: Path) -> bool:
    """Whether ``pid`` is an inferd operator or its supervisor, of ``home`` (not a process that
    took a stale pid from ``operator.json`` after a reboot, such as another home's operator:
    ``inferd down`` stopped that one)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return False
    # A home's operator runs as its owner, who is this user (storage/private.py refuses another's
    # home): another user's operator, whose environment this user cannot read, is not this one.
    return owner == os.getuid() and b"inferd.operator." in command and _same_home(pid, home)


def _same_home(pid: int, home: Path) -> bool:
    """Whether process ``pid`` runs with ``home`` as its ``INFERD_HOME`` (True when its
    environment cannot tell)."""
    try:
        variables = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        ours = os.stat(home)
    except OSError:
        return True
    if b"INFERD_HOME" in variables:
        theirs = os.path.join(f"/proc/{pid}/cwd", os.fsdecode(variables[b"INFERD_HOME"]))
    elif b"HOME" in variables:
        theirs = os.path.join(os.fsdecode(variables[b"HOME"]), ".inferd")
    else:
        return True
    try:
        found = os.stat(theirs)
    except FileNotFoundError:
        return False  # (its home gone: not this one, which exists)
    except OSError:
        return True
    return (found.st_dev, found.st_ino) == (ours.st_dev, ours.st_ino)


def live_supervisor(info: dict[str, Any], home: Path) -> int:
    """The pid of the supervisor ``operator.json`` names while it runs, else 0 (also when its
    pid now belongs to another process: the file outlived a reboot)."""
    pid = int(info.get("supervisor") or 0)
    return pid if pid and running(pid) and is_operator(pid, home) else 0
