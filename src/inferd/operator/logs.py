"""The admin API's view of an API's logs: where a read starts (tail, since) and the next chunk.

The files and their rotation are ``inferd.logfiles``; this module only decides what a
``GET /logs/<api>`` returns: the text after a cursor, or, for a first read, after the start
that ``tail`` and ``since`` choose (the later of the two when both are given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferd.config.names import DNS_1035, DNS_1123
from inferd.errors import NotFoundError, in_several_deployments
from inferd.logfiles import access_path, log_path
from inferd.logreading import (
    Cursor,
    end_cursor,
    files_of,
    line_time,
    read_after,
    since_cursor,
    tail_cursor,
    tail_lines,
)
from inferd.operator.state import StateError

DEFAULT_TAIL = 100
__all__ = [
    "DEFAULT_TAIL",
    "adopt_first_round_log",
    "log_path",
    "logged_keys",
    "offline_key",
    "read_logs",
    "recent_lines",
]


def logged_keys(home: Path, api: str) -> list[str]:
    """The keys (``DEPLOYMENT/API``) whose log is on disk under the API name ``api``: a deleted
    API's log stays until ``inferd prune``, so ``inferd logs API`` finds it by its bare name too."""
    return sorted(f"{path.parent.name}/{api}" for path in (home / "logs").glob(f"*/{api}.log"))


def adopt_first_round_log(home: Path, key: str) -> None:
    """Move an API's log of an inferd before 2026-11-29, ``logs/<api>.log`` (an API name was
    unique across deployments then), to where its log is now, ``logs/<deployment>/<api>.log``,
    while no deployment has a log of that API name yet: the first start after the upgrade (an
    inferd between left the old file where it was, and a later deployment may have taken the
    name). Was: ``inferd logs`` showed only the lines since the upgrade, and the API's history
    stayed in a file no command read while the API was deployed."""
    api = key.rsplit("/", 1)[-1]
    older = home / "logs" / f"{api}.log"
    newer = log_path(home, key)
    if "/" not in key or not older.is_file() or files_of(newer) or logged_keys(home, api):
        return
    newer.parent.mkdir(parents=True, exist_ok=True)
    for file in files_of(older):  # its rotated files keep their numbers
        file.rename(newer.with_name(newer.name + file.name.removeprefix(older.name)))


def _api_key(key: str) -> bool:
    """Whether ``key`` is ``DEPLOYMENT/API`` with names a project may give them."""
    deployment, _, api = key.partition("/")
    return bool(DNS_1123.match(deployment) and DNS_1035.match(api))


def offline_key(home: Path, api: str) -> str:
    """The key of ``api``'s log on disk, read with no operator running (``inferd logs`` after
    ``inferd down``): ``DEPLOYMENT/API``, or a bare name that one deployment's log has."""
    keys = [api] if "/" in api else logged_keys(home, api)
    # only a name an API can have: `inferd logs ../notes` printed $INFERD_HOME/notes.log
    keys = [key for key in keys if _api_key(key) and log_path(home, key).exists()]
    if len(keys) > 1:
        raise in_several_deployments("api", api, keys, was=True)
    if not keys:
        raise NotFoundError(
            f"no API named '{api}' has a log in {home / 'logs'} (the operator is not running)"
        )
    return keys[0]


def _position(path: Path, cursor: Cursor) -> tuple[int, int]:
    inodes = []
    for file in files_of(path):
        try:
            inodes.append(file.stat().st_ino)
        except OSError:
            inodes.append(0)
    index = inodes.index(cursor.inode) if cursor.inode in inodes else len(inodes)
    return index, cursor.offset


def start_cursor(path: Path, tail: int | None, since: float | None) -> Cursor:
    """Where a first read starts: the last ``tail`` lines, lines since ``since``, or both."""
    starts = []
    if tail is not None:
        starts.append(tail_cursor(path, tail))
    if since is not None:
        starts.append(since_cursor(path, since))
    if not starts:
        starts.append(tail_cursor(path, DEFAULT_TAIL))
    return max(starts, key=lambda cursor: _position(path, cursor))


def read_logs(
    home: Path,
    api: str,
    access: bool = False,
    cursor: str | None = None,
    tail: int | None = None,
    since: float | None = None,
) -> dict[str, Any]:
    """``{"text", "cursor", "more"}``: the next lines of an API's log (or access log).

    ``more`` says the text stopped before the end (one answer holds about 1 MiB): ask again.
    """
    path = access_path(home, api) if access else log_path(home, api)
    if not cursor:  # the first read: was nothing shown and exit 0 for a log that cannot be read
        try:
            path.open("rb").close()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(f"cannot read the log {path} ({exc.strerror or exc})") from None
    start = Cursor.decode(cursor) if cursor else start_cursor(path, tail, since)
    text, after = read_after(path, start)
    more = bool(text) and after != end_cursor(path)
    return {"text": text, "cursor": after.encode(), "more": more}


def recent_lines(home: Path, api: str, count: int, width: int = 2000) -> list[str]:
    """The last ``count`` lines of the API's log and access log merged by time (the dashboard's
    view: its output, inferd's events and the requests in one list). Each log keeps the order it
    was written in: a line stamped before the one above it (the clock was set back) counts as
    written with it, so the newest lines stay at the end."""
    stamped: list[tuple[float, int, str]] = []
    for path in (log_path(home, api), access_path(home, api)):
        when = 0.0
        for line in tail_lines(path, count, width):
            when = max(when, line_time(line.encode("utf-8", "replace"), when))
            stamped.append((when, len(stamped), line))
    stamped.sort()
    return [line for _, _, line in stamped[-count:]]
