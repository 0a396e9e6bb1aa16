"""Snapshots of deployed projects: ``$INFERD_HOME/projects/<digest>``, one per distinct content.

Each deploy copies the project folder (as Cortex zipped it: hidden files and ``.pyc`` left out)
so a restarted operator brings back exactly what was deployed, whatever happened to the source
folder since; a file an earlier snapshot holds with the same content is hard-linked, not copied.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

from inferd.config.load import load_project
from inferd.errors import ConfigError
from inferd.operator.prune import human_bytes
from inferd.operator.state import StateError, read_json
from inferd.storage import (
    CREATED_MARK,
    SKIPPED_DIRS,
    file_digest,
    left_out_part,
    left_out_reason,
    project_files,
    scratch_folder,
)
from inferd.storage import (
    SNAPSHOT_FILES as SNAPSHOT_FILES,
)
from inferd.storage.durable import sync_entries, sync_files

if TYPE_CHECKING:
    from inferd.config.schema import Project

# Left free on the disk by a snapshot, for state.json, the logs and the replicas' own writes
# (at most a twentieth of the disk).
RESERVE_BYTES = 64 << 20


def project_fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """The project's files by name, size and modification time: whether a folder is the one a
    running deploy copied, without reading the files."""
    found = []
    for path in project_files(root):
        with contextlib.suppress(OSError):
            stat = path.stat()
            found.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


LINKED_FOLDERS = (
    "a deploy copies the project's files, and the files that links name, but no linked folder "
    "(inferd serve runs the folder itself)"
)


def linked_folders(root: Path) -> list[str]:
    """The links to folders in the project (relative paths): a snapshot leaves them out, as a
    link could name ``/``, while ``inferd serve`` and ``inferd test`` see them in place."""
    found = []
    for folder, dirs, _names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        found += [
            os.path.relpath(os.path.join(folder, d), root)
            for d in dirs
            if os.path.islink(os.path.join(folder, d))
        ]
    return found


def key_files(project: Project) -> set[Path]:
    """The API key files (``auth.keys_file``) inside the project: never copied into a snapshot."""
    found = set()
    for config in project.apis:
        auth = config.api.auth
        if auth is not None and auth.keys_file is not None:
            path = Path(auth.keys_file)
            found.add((path if path.is_absolute() else project.root / path).resolve())
    return found


def snapshot_project(root: Path, home: Path, skip: set[Path] | None = None) -> Path:
    """Copy the project's files into ``projects/<digest>`` (once per distinct content), but ``skip``.

    A file some kept snapshot already holds with the same content is hard-linked from it, not
    copied: an edited handler beside a 5 GB model adds the handler, not another 5 GB.
    """
    files = [path for path in project_files(root) if not skip or path.resolve() not in skip]
    try:
        digests = {str(path.relative_to(root)): file_digest(path) for path in files}
    except OSError as exc:  # a file that went away or cannot be read since the walk
        raise StateError(f"cannot read the project's file {exc.filename}: {exc.strerror or exc}") from exc
    target = home / "projects" / digest_of(digests)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    held = _held_files(target.parent)
    _check_room(target.parent, [path for path in files if digests[str(path.relative_to(root))] not in held])
    scratch = scratch_folder(target.parent, ".copy-")
    try:
        copied = [scratch / SNAPSHOT_FILES]
        for path in files:
            relative = str(path.relative_to(root))
            destination = scratch / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not _link_same(held.get(digests[relative]), path, destination):
                copy_sparse(path, destination)
                copied.append(destination)
        (scratch / SNAPSHOT_FILES).write_text(json.dumps(digests))
        # On the disk before state.json names the snapshot: after a power cut, a restart finds
        # the files of every version it brings back (a linked file was written by its snapshot).
        if not sync_files(copied):
            for folder, _dirs, _names in os.walk(scratch):
                sync_entries(Path(folder))
        scratch.rename(target)
        sync_entries(target.parent)
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if target.is_dir():
            return target
        raise StateError(f"cannot copy the project into {target.parent}: {exc.strerror or exc}") from exc
    return target


def _allocated(path: Path) -> int:
    """The bytes a copy of ``path`` takes on disk: a sparse file's holes take none."""
    found = path.stat()
    return min(found.st_size, found.st_blocks * 512)


def _check_room(projects: Path, copied: list[Path]) -> None:
    """Refuse a snapshot whose copies would not fit on the disk beside ``RESERVE_BYTES``."""
    try:
        needed = sum(_allocated(path) for path in copied)
        usage = shutil.disk_usage(projects)
    except OSError:
        return  # the copy itself says what is wrong
    reserve = min(RESERVE_BYTES, usage.total // 20)  # a small disk keeps a twentieth of itself
    free = usage.free - reserve
    if needed > free:
        raise StateError(
            f"No space left on device for the snapshot: the project's files need {human_bytes(needed)} "
            f"more in {projects.parent}, whose disk has {human_bytes(max(free, 0))} free (beyond the "
            f"{human_bytes(reserve)} inferd keeps for its state and logs): nothing was deployed; free "
            "some space, or move files the APIs do not need out of the project folder"
        )


def copy_sparse(source: Path, destination: Path) -> None:
    """``shutil.copy2``, but the holes of a sparse file stay holes (``SEEK_DATA``/``SEEK_HOLE``).

    A 2 GiB sparse file (28 KiB on disk) took 2.1 GiB in each snapshot, written in full.
    """
    found = source.stat()
    if found.st_blocks * 512 >= found.st_size:
        shutil.copy2(source, destination)
        return
    with source.open("rb") as read, destination.open("wb") as write:
        try:
            position = 0
            while position < found.st_size:
                try:
                    start = os.lseek(read.fileno(), position, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: only a hole from here to the end
                        raise
                    break
                end = os.lseek(read.fileno(), start, os.SEEK_HOLE)
                read.seek(start)
                write.seek(start)
                while start < end:
                    block = read.read(min(end - start, 1 << 20))
                    if not block:
                        break
                    write.write(block)
                    start += len(block)
                position = end
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # a file system without SEEK_DATA: copied in full
                raise
            read.seek(0)
            write.seek(0)
            shutil.copyfileobj(read, write, 1 << 20)
        write.truncate(found.st_size)
    shutil.copystat(source, destination)


def _held_files(projects: Path) -> dict[str, tuple[Path, int]]:
    """Content digest -> a file with that content in a finished snapshot (its ``SNAPSHOT_FILES``)."""
    held: dict[str, tuple[Path, int]] = {}
    with contextlib.suppress(OSError):
        for snapshot in projects.iterdir():
            listed = read_json(snapshot / SNAPSHOT_FILES)
            mark = snapshot / CREATED_MARK
            if listed is None or snapshot.is_symlink() or not mark.is_file():
                continue
            made = mark.stat().st_mtime_ns
            for relative, digest in listed.items():
                if isinstance(digest, str):
                    held.setdefault(digest, (snapshot / str(relative), made))
    return held


def _link_same(held: tuple[Path, int] | None, original: Path, destination: Path) -> bool:
    """Hard-link ``held`` (a file inside a snapshot listed with the same content as ``original``,
    and when the snapshot was begun) at ``destination``; False if it cannot be. A file written
    since its snapshot was made (a replica may write in its project folder) is never linked: its
    listed digest is no longer its content."""
    try:
        if held is None:
            return False
        source, made = held
        found = source.lstat()
        if not S_ISREG(found.st_mode) or found.st_size != original.stat().st_size or found.st_mtime_ns > made:
            return False
        os.link(source, destination)
    except OSError:  # another file system, a link limit: copied instead
        return False
    return True


def digest_of(digests: dict[str, str]) -> str:
    """A snapshot's name: the digest of its files' names and contents."""
    import hashlib

    digest = hashlib.sha256()
    for relative, content in digests.items():
        digest.update(os.fsencode(relative) + b"\0" + content.encode())  # any file name
    return digest.hexdigest()[:24]


def load_snapshot(snapshot: Path, source: Path) -> Project:
    """The project as deployed; a config error its source folder did not have (a model folder
    that is a link, or in a folder no snapshot holds) says what the deploy left out."""
    try:
        return load_project(snapshot, keys_root=source)
    except ConfigError as exc:
        why = _left_out_on_the_way(source, exc.message)
        if why is None:
            raise
        raise ConfigError(f"{exc.message} in what is deployed: {why}") from None


def written_paths(project: Project) -> list[tuple[str, str, str]]:
    """The local paths the config names, as ``(api, field, path)``: models, handlers and
    predictors, ``python_path``."""
    found = []
    for config in project.apis:
        api = config.api
        block = api.model_format
        fields = (
            ("model", api.model_uri),
            ("path" if block == "predictor" else "request_handler", api.handler_file),
        )
        for field, text in (*fields, ("python_path", api.python_path)):
            if text is not None and "://" not in text:
                found.append((config.name, f"{block}.{field}", text))
    return found


def left_out_paths(project: Project) -> list[tuple[str, str, str, Path]]:
    """The paths the config names that no snapshot holds (in a hidden folder, a ``venv``...), as
    ``(api, field, path, the part left out)``: ``inferd serve`` finds them, a deploy does not."""
    found = []
    for api, field, text in written_paths(project):
        relative = Path(os.path.relpath(os.path.join(project.root, text), project.root))
        part = left_out_part(project.root, relative)
        if part is not None:
            found.append((api, field, text, part))
    return found


def absolute_paths(project: Project) -> list[tuple[str, str, str, str]]:
    """The paths the config names absolutely into the project folder, as ``(api, field, path, the
    path relative to the folder)``: ``inferd serve`` finds them, a deploy's copy of the folder,
    elsewhere, does not."""
    root = os.path.realpath(project.root)
    found = []
    for api, field, text in written_paths(project):
        if os.path.isabs(text):
            relative = os.path.relpath(os.path.realpath(text), root)
            if relative != ".." and not relative.startswith(f"..{os.sep}"):
                found.append((api, field, text, relative))
    return found


def _left_out_on_the_way(source: Path, message: str) -> str | None:
    """Why a snapshot lacks a path that ``source``'s config names, which ``message`` (the
    snapshot's config error) is about: a link to a folder on its way, or a folder or file no
    snapshot holds; ``None`` when neither explains it (a model in a hidden folder is no link's
    fault)."""
    try:
        project = load_project(source)
    except ConfigError:
        return None
    for _api, _field, text, relative in absolute_paths(project):
        if text in message:
            return (
                f"{text} is an absolute path into {source}, but a deploy runs a copy of the project folder: "
                f"write it relative to the folder ({relative})"
            )
    left_out = [(text, part) for _api, _field, text, part in left_out_paths(project)]
    left_out.sort(key=lambda found: found[0] not in message)  # the path the error names first
    if left_out and left_out[0][0] in message:
        return f"{left_out[0][1]} is in {source}, but {left_out_reason(left_out[0][1])}"
    written = [
        Path(os.path.relpath(os.path.join(source, text), source)).parts  # an absolute one too
        for _api, _field, text in written_paths(project)
    ]
    linked = [
        link
        for link in linked_folders(source)
        if any(parts[: len(Path(link).parts)] == Path(link).parts for parts in written)
    ]
    if not linked:
        return f"{left_out[0][1]} is in {source}, but {left_out_reason(left_out[0][1])}" if left_out else None
    names = ", ".join(linked[:3]) + (f" and {len(linked) - 3} more" if len(linked) > 3 else "")
    return (
        f"{names} {'is a link' if len(linked) == 1 else 'are links'} to a folder, and {LINKED_FOLDERS}: "
        "make it a folder"
    )
