"""Each API's latest log lines and payload records for the dashboard, read again only when one
of its files changed.

Every refresh of every open page (each 2.5 s) asks for all of them: reading and parsing the last
50 lines of each API's two logs cost 41 ms of CPU with 191 idle APIs (2 ms now). A file's
identity, size and modification time say whether it changed (an append grows it, a rotation
replaces it), so an idle API costs three ``stat`` calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from inferd.logfiles import access_path, log_path
from inferd.operator.logs import recent_lines
from inferd.operator.payloads import payload_path, recent_payloads

Stamp = tuple[int, int, int] | None  # a file's inode, size and mtime (ns); None: not there
Recent = tuple[list[str], list[dict[str, Any]]]  # log lines, payload records


def _stamp(path: Path) -> Stamp:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


class RecentFiles:
    """What ``read`` gave each API last, and the state of the files it came from."""

    def __init__(self, home: Path, lines: int, width: int, payloads: int) -> None:
        self.home = home
        self.lines, self.width, self.payloads = lines, width, payloads
        self._kept: dict[str, tuple[tuple[Stamp, ...], Recent]] = {}
        self._paths: dict[str, tuple[Path, ...]] = {}

    def read(self, keys: list[str]) -> dict[str, Recent]:
        """Each API's last log lines (output and access merged) and payload records (a worker
        thread's work: files only). APIs not asked for are forgotten."""
        home, kept, result = self.home, self._kept, {}
        fresh: dict[str, tuple[tuple[Stamp, ...], Recent]] = {}
        for key in keys:
            paths = self._paths.get(key)
            if paths is None:
                paths = self._paths[key] = (
                    log_path(home, key),
                    access_path(home, key),
                    payload_path(home, key),
                )
            stamps = tuple(map(_stamp, paths))
            before = kept.get(key)
            if before is not None and before[0] == stamps:
                recent = before[1]
            else:
                recent = (
                    recent_lines(home, key, self.lines, self.width),
                    recent_payloads(home, key, self.payloads),
                )
            fresh[key] = (stamps, recent)
            result[key] = recent
        self._kept = fresh
        if len(self._paths) > len(fresh):
            self._paths = {key: self._paths[key] for key in fresh}
        return result
