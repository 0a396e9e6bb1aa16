"""What ``/proc`` says of a process: whether it runs, when it started, whether this one's working
folder still exists; read the same way wherever inferd asks.

A zombie (ended, not yet reaped) counts as gone. The state is the field after the command name,
read after its closing parenthesis: a name may hold spaces and parentheses (replicas name
themselves ``inferd replica classifier-3``), which splitting the line on spaces misread.
"""

from __future__ import annotations

import os


def _fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (the state first); None when the
    process is gone, a zombie, or its file unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return fields if fields and fields[0] != b"Z" else None


def started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot: a number no clock change moves, which
    tells it from a later process given the same pid); None when it is gone or unreadable."""
    fields = _fields(pid)
    try:
        return None if fields is None else int(fields[19])
    except (IndexError, ValueError):
        return None


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie counts as gone; another user's process counts)."""
    return _fields(pid) is not None


def working_folder_exists() -> bool:
    """Whether this process's working folder exists (a shell's may be removed while it is in it)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True
