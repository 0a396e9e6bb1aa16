"""What ``/proc`` says of a process: whether it runs, read the same way wherever inferd asks.

A zombie (ended, not yet reaped) counts as gone. The state is the field after the command name,
read after its closing parenthesis: a name may hold spaces and parentheses (replicas name
themselves ``inferd replica classifier-3``), which splitting the line on spaces misread.
"""

from __future__ import annotations


def started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot: a number no clock change moves, which
    tells it from a later process given the same pid); None when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            line = stat.read()
    except OSError:
        return None
    fields = line.rpartition(b")")[2].split()
    try:
        return int(fields[19]) if fields[0] != b"Z" else None
    except (IndexError, ValueError):
        return None


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie counts as gone; another user's process counts)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            line = stat.read()
    except OSError:
        return False
    fields = line.rpartition(b")")[2].split()
    return bool(fields) and fields[0] != b"Z"
