"""A replica's process group: what its handler starts ends with it.

Each replica leads a session and process group of its own (``lead_group``, first thing in the
process), which every process its handler starts joins (a helper server, a ``subprocess``), as
every process of a container goes with it in Cortex. When the replica ends, that group is
killed: by the replica itself when it leaves (``end_own_group``: a drain, a stop, the gateway
gone), and by whoever reaps it (``end_group``: the zygote or the engine) when it died at once
(SIGKILL, ``os._exit``, the OOM killer). The reaper kills the group before it reaps the replica,
while the replica's pid is still a zombie's and cannot name another process.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def lead_group() -> None:
    """Make this process the leader of a new session and process group (a replica's first act)."""
    with contextlib.suppress(OSError):  # already a group leader: nothing to do
        os.setsid()


def end_group(pid: int) -> None:
    """Kill what is left of the process group that replica ``pid`` leads (nothing if none).

    Call it before reaping ``pid``: a group whose leader is unreaped cannot be another's.
    """
    with contextlib.suppress(OSError):  # no such group: the replica started nothing, or died early
        os.killpg(pid, signal.SIGKILL)


def end_own_group() -> None:
    """Kill the other processes of the group this process leads (a leaving replica's last act)."""
    me = os.getpid()
    if os.getpgrp() != me:  # not a replica that leads its group (a zygote, a test): none of ours
        return
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        # No descriptor left to list /proc with (a handler that leaked them to EMFILE): the whole
        # group goes, this leaving process with it, rather than its children staying behind.
        os.killpg(me, signal.SIGKILL)
        return
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(me):  # stat's 5th field: the process group
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
