"""Garbage collection of ``$INFERD_HOME``: project snapshots, cached models, requirement envs.

Every deploy of changed code adds a snapshot (``projects/<digest>``), maybe a downloaded model
(``cache/models/<digest>``, ``cache/unzipped/<digest>``) and a requirements environment
(``envs/<digest>``). After each deploy and delete the operator keeps what running versions use
plus each API's previous version (a rollback needs it) and removes the rest. The copies of
ONNX models whose weights replicas share (``cache/shared/<key>``) stay while a running process
loaded them; a replica that needs one again remakes it. Only what inferd
created is a candidate: a digest-named folder in one of those places holding inferd's mark
(``storage.CREATED_MARK``), or one of its own scratch folders left by a crash (older than an
hour, marked the same way when it was made, by a process that no longer runs: a clock set an
hour forward made a download's folder look an hour old under it). Anything else there is left
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from inferd.logfiles import folder_bytes
from inferd.operator.state import StateError
from inferd.operator.workspaces import forget_workspaces
from inferd.storage import CREATED_MARK, record_name, recorded_path, scratch_owner_runs

# folder (relative to the home) -> (what its entries are, the names inferd gives them)
PLACES = {
    "projects": ("snapshots", re.compile(r"^[0-9a-f]{24}$")),
    "envs": ("environments", re.compile(r"^[0-9a-f]{24}$")),
    "cache/models": ("models", re.compile(r"^[0-9a-f]{32}$")),
    "cache/unzipped": ("models", re.compile(r"^[0-9a-f]{32}$")),
    # shared ONNX weights (``runtimes/onnx_shared``): kept while a running replica loaded them
    "cache/shared": ("shared weights", re.compile(r"^[0-9a-f]{32}$")),
}
RECORD = re.compile(r"^[0-9a-f]{32}\.json$")
SCRATCH = re.compile(r"^(\.copy-|\.installing-|tmp)[\w-]+$")
SCRATCH_AGE = 3600.0
# where taken entries wait to be deleted: a folder inferd made (its mark inside), never one of
# the same name someone else keeps (an INFERD_HOME that is a home folder may hold a .trash)
TRASH = ".inferd-trash"
PERIOD = 60.0

log = logging.getLogger("inferd.operator")


@dataclass
class Pruned:
    """What one collection removed."""

    freed: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def add(self, other: Pruned) -> Pruned:
        self.freed += other.freed
        for kind, count in other.removed.items():
            self.removed[kind] = self.removed.get(kind, 0) + count
        self.paths.extend(other.paths)
        return self

    def summary(self) -> str:
        counts = ", ".join(f"{count} {kind}" for kind, count in sorted(self.removed.items()) if count)
        return f"freed {human_bytes(self.freed)}" + (f" ({counts})" if counts else "")


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _kept(entry: Path, keep: list[Path]) -> bool:
    return any(path == entry or entry in path.parents or path in entry.parents for path in keep)


def candidates(home: Path, keep: Iterable[Path], now: float | None = None) -> list[tuple[str, Path]]:
    """``(kind, path)`` of every entry inferd created that nothing in ``keep`` uses."""
    kept = [Path(os.path.abspath(path)) for path in keep]
    now = time.time() if now is None else now
    found: list[tuple[str, Path]] = []
    for place, (kind, pattern) in PLACES.items():
        folder = Path(os.path.abspath(home / place))
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink() or not entry.is_dir():
                continue
            if pattern.match(entry.name):
                if (entry / CREATED_MARK).is_file() and not _kept(entry, kept):
                    found.append((kind, entry))
            elif (
                SCRATCH.match(entry.name)
                and (entry / CREATED_MARK).is_file()
                and not _changed_since(entry, now - SCRATCH_AGE)
                and not scratch_owner_runs(entry)
            ):
                found.append(("scratch folders", entry))
    return found


def _changed_since(folder: Path, since: float) -> bool:
    """Whether ``folder`` or anything in it changed after ``since``: a download or install an
    hour long writes into its scratch folder's files, not the folder (whose own time alone made
    it look abandoned: it was collected under the download). True when it cannot be read."""
    try:
        if folder.stat().st_mtime > since:
            return True
        for parent, folders, files in os.walk(folder):
            for name in (*folders, *files):
                if os.lstat(os.path.join(parent, name)).st_mtime > since:
                    return True
    except OSError:
        return True
    return False


def take_away(home: Path, keep: Iterable[Path], leftovers: bool = True) -> tuple[Pruned, list[Path]]:
    """Move every unused entry into ``home/.inferd-trash`` (a rename each: quick, on the event loop).

    Returns what was taken and the folders to delete, neither measured nor read here: their
    bytes are ``sizes(moved)``'s to count and ``empty_trash``'s to delete, both in a thread. With
    ``leftovers`` (no emptying under way), what the trash still holds counts too: an emptying
    that a crash interrupted left it there, and only a collection that moved something new
    emptied it (a killed operator's half-deleted model stayed, `inferd prune` said "freed 0 B").
    """
    from inferd.runtimes.onnx_shared import forget_locks, unused  # numpy: not for `inferd version`

    result = Pruned()
    trash = home / TRASH
    moved: list[Path] = []
    if leftovers and not trash.is_symlink() and (trash / CREATED_MARK).is_file():
        with contextlib.suppress(OSError):
            left = [entry for entry in trash.iterdir() if entry.name != CREATED_MARK]
            if left:
                result.removed["leftovers of an interrupted collection"] = len(left)
                moved.extend(left)
    for kind, entry in candidates(home, keep):
        if not _trash_ready(trash):
            break
        target = trash / f"{entry.parent.name}-{entry.name}-{time.time_ns()}"
        shared = entry.parent == Path(os.path.abspath(home / "cache" / "shared"))
        with unused(entry) if shared else contextlib.nullcontext(True) as free:
            try:
                if not free:
                    continue
                entry.rename(target)
            except OSError:
                continue
        moved.append(target)
        result.removed[kind] = result.removed.get(kind, 0) + 1
        result.paths.append(str(entry))
    forget_records(home)  # after the copies they name are taken
    forget_locks(home / "cache" / "shared")  # and the locks of copies taken
    return result, moved


def forget_records(home: Path, now: float | None = None) -> int:
    """Remove the small records kept per model URI once their cached copy is gone; how many.

    ``cache/models/last/<hash>.json`` names the copy a URI was last fetched into (what serves
    while its origin is down), ``cache/models/external/<hash>.json`` an s3:// ONNX model's
    external data files: one each per URI ever fetched, so a CI deploying a new model path per
    build left thousands. A ``last`` record goes with its copy, an ``external`` one when no
    ``last`` record names its object (after an hour: a download may be writing it now).
    """
    now = time.time() if now is None else now
    models = home / "cache" / "models"
    removed = 0
    named: set[str] = set()
    for record in _records(models / "last"):
        try:
            found = json.loads(record.read_text(encoding="utf-8"))
            uri, path = str(found["uri"]), recorded_path(str(found["path"]), home / "cache")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours to judge
        if path.exists():
            if uri.startswith("s3://"):
                named.add(record_name(uri[len("s3://") :]))
            continue
        with contextlib.suppress(OSError):
            record.unlink()
            removed += 1
    for record in _records(models / "external"):
        with contextlib.suppress(OSError):
            if record.name not in named and now - record.stat().st_mtime > SCRATCH_AGE:
                record.unlink()
                removed += 1
    return removed


def _records(folder: Path) -> list[Path]:
    """The ``<hash>.json`` files inferd writes in ``folder`` (nothing else there is touched)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [e for e in entries if RECORD.match(e.name) and e.is_file() and not e.is_symlink()]


def _trash_ready(trash: Path) -> bool:
    """Make inferd's trash folder; False when a folder of that name is not inferd's."""
    try:
        trash.mkdir(parents=True, mode=0o700)
        (trash / CREATED_MARK).write_text("")
    except FileExistsError:
        return not trash.is_symlink() and (trash / CREATED_MARK).is_file()
    except OSError:
        return False
    return True


def sizes(moved: list[Path]) -> int:
    """The bytes of the entries ``take_away`` moved (a walk of every file in them: in a thread
    while the operator runs, as one of its event loop's steps it stalled every API's requests,
    150 ms for a snapshot of 20,000 files)."""
    return sum(map(folder_bytes, moved))


def empty_trash(home: Path) -> None:
    """Delete what ``take_away`` moved aside (also what a crash left there)."""
    trash = home / TRASH
    if not trash.is_symlink() and (trash / CREATED_MARK).is_file():
        shutil.rmtree(trash, ignore_errors=True)


# One API's files under logs/<deployment>/ and payloads/<deployment>/ (``logfiles``, ``payloads``),
# and its last replay's result under replays/<deployment>/ (``cli/replay.py``)
API_FILE = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})(\.log|\.access\.log|\.jsonl)(\.\d+)?$")
REPLAY_FILE = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})\.json$")


def forget_apis(home: Path, deployments: set[str], apis: set[str] | None = None) -> Pruned:
    """Remove what APIs that are gone leave (``inferd prune``): their log and payload files, their
    last replay, and the projects the Python client wrote for deployments that are gone.

    A deleted API's files stay after the delete (``inferd logs`` still reads them) until a prune.
    Gone: of a deployment not in ``deployments``, or, when ``apis`` (keys) is given, not in it.
    A file this process still has open is left; so are files and folders of other names.
    """
    result = Pruned()
    for folder, size in forget_workspaces(home, deployments):
        result.freed += size
        result.paths.append(str(folder))
        result.removed["Python client projects"] = result.removed.get("Python client projects", 0) + 1
    held = _open_files()
    gone: set[str] = set()
    for place, named in (("logs", API_FILE), ("payloads", API_FILE), ("replays", REPLAY_FILE)):
        try:
            folders = sorted((home / place).iterdir())
        except OSError:
            continue
        for folder in folders:
            if folder.is_symlink() or not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                found = named.match(entry.name)
                key = f"{folder.name}/{found.group(1)}" if found else ""
                live = folder.name in deployments and (apis is None or key in apis)
                if not found or live or entry.is_symlink() or not entry.is_file():
                    continue
                if Path(os.path.realpath(entry)) in held:
                    continue
                with contextlib.suppress(OSError):
                    size = entry.stat().st_size
                    entry.unlink()
                    result.freed += size
                    result.paths.append(str(entry))
                    gone.add(key)
            if folder.name not in deployments:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when nothing else is in it
    if gone:
        result.removed["logs of deleted APIs"] = len(gone)
    return result


def _open_files() -> set[Path]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                found.add(Path(os.readlink(f"/proc/self/fd/{fd}")))
    return found


def prune(home: Path, keep: Iterable[Path]) -> Pruned:
    """Remove every unused entry now (``inferd prune`` with no operator running)."""
    result, moved = take_away(home, keep)
    result.freed = sizes(moved)
    empty_trash(home)
    return result


def usage(home: Path) -> dict[str, int]:
    """Bytes under the home by part: projects, cache, envs, logs and the rest."""
    parts = {name: folder_bytes(home / name) for name in ("projects", "cache", "envs", "logs")}
    parts["total"] = folder_bytes(home)
    parts["other"] = max(
        0, parts["total"] - sum(parts[name] for name in ("projects", "cache", "envs", "logs"))
    )
    return parts


class Collector:
    """Collects after each deploy and delete, and every minute (what drained replicas left).

    ``kept`` says what must stay; ``busy`` says a deploy is preparing (its new snapshot or
    environment is not recorded yet), and then nothing is collected until the next time.
    """

    def __init__(self, home: Path, kept: Callable[[], set[Path]], busy: Callable[[], bool]) -> None:
        self.home = home
        self.kept = kept
        self.busy = busy
        self._tasks: set[asyncio.Future[None]] = set()

    def collect(self) -> asyncio.Future[Pruned] | None:
        """Take away what is unused now: renamed into the trash here, then measured and deleted
        in a thread. The future gives what was taken once it is measured (the deletion goes on);
        None when a deploy is busy."""
        if self.busy():
            return None
        result, moved = take_away(self.home, self.kept(), leftovers=not self._tasks)
        measured: asyncio.Future[Pruned] = asyncio.get_running_loop().create_future()
        if not moved:
            measured.set_result(result)
            return measured
        task = asyncio.ensure_future(self._empty(result, moved, measured))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return measured

    async def _empty(self, result: Pruned, moved: list[Path], measured: asyncio.Future[Pruned]) -> None:
        try:
            result.freed = await asyncio.to_thread(sizes, moved)
        finally:
            if not measured.done():
                measured.set_result(result)
        log.info("collected unused files: %s", result.summary())
        await asyncio.to_thread(empty_trash, self.home)

    async def collect_now(self) -> Pruned | None:
        """``collect`` for ``inferd prune``: a file it cannot read or remove is the user's error
        in a sentence (was: "operator error: PermissionError: ..." and a traceback in the log)."""
        try:
            measured = self.collect()
        except OSError as exc:
            raise StateError(f"cannot prune {exc.filename or self.home}: {exc.strerror or exc}") from None
        return None if measured is None else await measured

    def tidy(self) -> None:
        """``collect`` after a deploy, a delete, a start and each minute: a file it cannot read
        or remove (a snapshot another user made, say) is said in the log, and what called it
        goes on (it stopped the operator at its start, its supervisor restarting it for ever)."""
        try:
            self.collect()
        except OSError as exc:
            log.error("collecting unused files failed: %s", exc)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(PERIOD)
            self.tidy()
