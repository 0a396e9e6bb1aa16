"""Replica numbers (``<api>-<n>``): given once per machine, they go on across operator restarts.

An API's log keeps earlier replicas' lines, so a restarted operator's ``slow-1`` must not be
another process than the one before it was: the last number given is kept in
``$INFERD_HOME/replica-ids``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

IDS_FILE = "replica-ids"  # in $INFERD_HOME: the last replica number given


def _last_id(path: Path | None) -> int:
    try:
        return int(path.read_text()) if path is not None else 0
    except (OSError, ValueError):
        return 0


class ReplicaIds:
    """The next replica numbers, kept in ``path`` (``None``: from 1, for this run only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ids = itertools.count(_last_id(path) + 1)

    def take(self) -> int:
        number = next(self._ids)
        if self.path is not None:
            with contextlib.suppress(OSError):  # ids of this run stay unique either way
                scratch = self.path.with_name(self.path.name + ".tmp")
                # the owner's only, whatever the umask (000 made it every user's to write)
                descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w") as out:
                    os.fchmod(descriptor, 0o600)  # a scratch file an older inferd left
                    out.write(str(number))
                os.replace(scratch, self.path)
        return number
