"""Per-API logs: the replicas' output and the engine's events, one file per API."""

from __future__ import annotations

from pathlib import Path

MAX_CHUNK = 1 << 20


def log_path(home: Path, api: str) -> Path:
    return home / "logs" / f"{api}.log"


def read_from(path: Path, offset: int) -> tuple[str, int]:
    """Text of ``path`` from byte ``offset`` (at most 1 MiB) and the offset after it.

    An offset past the end (the file was truncated or replaced) starts again from 0.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "", 0
    if offset > size:
        offset = 0
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(MAX_CHUNK)
    # Stop at the last complete line so a follower never prints half a line.
    if len(data) == MAX_CHUNK and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]
    return data.decode("utf-8", "replace"), offset + len(data)
