"""Model sources: a model URI -> a local path (project files, or a cache of remote objects).

The downloads themselves (``s3://``, ``http(s)://``, ``gs://``) are in ``storage.remote``; which
file or folder of a model path a runtime loads (SavedModel versions, ``.zip`` models) in
``storage.layout``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

from inferd.errors import ConfigError, LoadError, UnreachableError, UsageError
from inferd.procfs import started, working_folder_exists
from inferd.storage.durable import sync_entries
from inferd.storage.private import refuse_a_home_others_control

# Inside every folder inferd creates in its caches and snapshots: only such folders are ever
# collected (``operator/prune.py``), never a look-alike someone else put there.
CREATED_MARK = ".inferd-created"
# In each project snapshot: its files' content digests (relative path -> SHA-256), as copied
SNAPSHOT_FILES = ".inferd-files.json"


def inferd_home() -> Path:
    """inferd's state folder: ``$INFERD_HOME``, default ``~/.inferd``, as an absolute path.

    An empty ``INFERD_HOME`` (``export INFERD_HOME=``, a unit's unset variable) is the default, as
    the CLI's own checks read it: it was the current folder, so the token, ``state.json`` and
    the logs went into the project the user typed ``inferd deploy`` in. A relative one is made
    absolute: ``state.json`` recorded snapshots relative to the folder of the deploy.
    """
    value = os.environ.get("INFERD_HOME", "")
    try:
        return (Path(value).expanduser() if value else Path.home() / ".inferd").absolute()
    except RuntimeError:  # no HOME and no passwd entry (a container's user): was a traceback
        raise UsageError(
            "cannot find your home folder for ~/.inferd (HOME is not set): set INFERD_HOME to a folder"
        ) from None


# What a home inferd cannot make or write says: the user can point INFERD_HOME elsewhere.
_HOME_REFUSALS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR, errno.ENOENT}


def os_error_message(exc: OSError) -> str:
    """One sentence for an OSError; one under INFERD_HOME names the variable and the fix."""
    reason = exc.strerror or str(exc)
    if not exc.filename:
        if isinstance(exc, FileNotFoundError) and not working_folder_exists():
            # what os.getcwd() says, naming no file: `inferd init NAME` in a removed folder
            return f"the current folder was removed ({reason}): cd to a folder that exists"
        return reason
    return home_refusal(exc) or f"{reason} ({Path(os.fsdecode(exc.filename))})"


def home_refusal(exc: OSError, home: Path | None = None) -> str | None:
    """The sentence for ``exc`` when it is the machine refusing the home (``INFERD_HOME``, or
    ``home``), a path under it or a folder above it that making it made: a home that is a file,
    a folder that cannot be written (a service account's ``HOME=/nonexistent``)."""
    if not exc.filename or exc.errno not in _HOME_REFUSALS:
        return None
    filename = Path(os.fsdecode(exc.filename))
    home = home or inferd_home()
    if not (filename == home or home in filename.parents or filename in home.parents):
        return None
    reason = exc.strerror or str(exc)
    fix = "set INFERD_HOME to a folder you can write"
    if filename == home and home.exists() and not home.is_dir():
        return f"INFERD_HOME {home} is not a folder ({reason}): {fix}"
    where = "" if filename == home else f": {filename}"
    return f"cannot write INFERD_HOME {home} ({reason}{where}): {fix}"


# What never travels with a project (a snapshot, a Ray zip, an export): hidden files at any
# depth, these folders, bytecode.
SKIPPED_DIRS = frozenset({"__pycache__", ".venv", "venv", "node_modules"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".pyd")


def left_out_part(root: Path, relative: Path) -> Path | None:
    """The start of ``relative`` (a path in the project folder ``root``) that never travels, as
    ``project_files`` leaves it out: a hidden file or folder, a folder of ``SKIPPED_DIRS`` or a
    bytecode file; ``None`` when the path travels."""
    parts = relative.parts
    if ".." in parts:  # outside the project: no snapshot's doing
        return None
    for count, part in enumerate(parts, start=1):
        start = Path(*parts[:count])
        folder = count < len(parts) or (root / start).is_dir()
        if part.startswith(".") or (part in SKIPPED_DIRS if folder else part.endswith(SKIPPED_SUFFIXES)):
            return start
    return None


def left_out_reason(part: Path) -> str:
    """Why ``part`` (from ``left_out_part``) is not deployed, and what to do, in words."""
    if part.name.startswith("."):
        return (
            "hidden files and folders are not deployed, as Cortex's project zip left them out: "
            "give it a name without the leading dot"
        )
    if part.name.endswith(SKIPPED_SUFFIXES):
        return "bytecode files (.pyc, .pyo, .pyd) are not deployed, as Cortex's project zip left them out"
    return f"folders named venv, node_modules or __pycache__ are not deployed: move it out of {part}"


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # a link loop, a dangling link
        return False


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path``, readable by this user only (mode 0600), in
    folders that are too where it makes them (``mkdir -p`` makes the parents by the umask)."""
    missing = [folder for folder in path.parents if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True, mode=0o700)
    path.parent.mkdir(exist_ok=True, mode=0o700)  # a file there: "File exists", said as such
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    sync_entries(path.parent)


def project_files(root: Path) -> list[Path]:
    """The files that travel with a project, sorted: regular files, or links to one.

    A FIFO, a device (a link to ``/dev/zero``), a socket or a link loop is left out: reading
    one would block forever or never end. So is ``$INFERD_HOME`` when it is inside the project.
    """
    files: list[Path] = []
    # An INFERD_HOME inside the project is no part of it: each snapshot held the ones before
    # (growing without end), the token and secrets.json
    home = inferd_home().resolve()
    inside = root.resolve() in home.parents
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        if inside:
            dirs[:] = [d for d in dirs if Path(folder, d).resolve() != home]
        for name in sorted(names):
            path = Path(folder) / name
            if not name.startswith(".") and not name.endswith(SKIPPED_SUFFIXES) and _is_regular(path):
                files.append(path)
    return files


def pin_inferd_home() -> Path:
    """``inferd_home()``, also set as ``INFERD_HOME`` for the processes this one starts: a replica
    runs in its project's folder, so a relative ``INFERD_HOME=state`` there was another folder (its
    shared ONNX weights were written into the project's snapshot, a copy per snapshot)."""
    home = inferd_home()
    refuse_a_home_others_control(home)
    os.environ["INFERD_HOME"] = str(home)
    return home


def cache_dir() -> Path:
    """Where downloaded and unpacked models live (``$INFERD_HOME/cache``)."""
    return inferd_home() / "cache"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def project_digest(root: Path, skip: Collection[Path] = ()) -> str:
    """SHA-256 over the files that travel with a project (``project_files``) but ``skip``.

    What Python writes beside a handler when a replica imports it (``__pycache__``), and hidden
    files, do not count: with bytecode writing on (Python's default), they made every redeploy
    of an unchanged project a new version that restarted its replicas.
    """
    digest = hashlib.sha256()
    for child in project_files(root):
        if child not in skip:
            try:
                content = file_digest(child)
            except FileNotFoundError:  # gone since the walk: an editor's scratch file
                continue
            except OSError as exc:  # another user's file, say: named, not taken for something else
                where = child.relative_to(root)
                raise ConfigError(f"cannot read the project's file {where}: {exc.strerror or exc}") from None
            digest.update(os.fsencode(child.relative_to(root)))
            digest.update(content.encode())
    return digest.hexdigest()


def local_model_path(uri: str, project_root: Path) -> Path:
    """The local path of a model URI relative to the project folder."""
    path = Path(uri)
    return path if path.is_absolute() else (project_root / path).resolve()


# One download of a URI at a time in this process: two APIs naming one model, prepared at once,
# downloaded it twice (the second now finds the first's copy in the cache).
_FETCHING: dict[str, threading.Lock] = {}
_FETCHING_GUARD = threading.Lock()


def _fetching(uri: str) -> threading.Lock:
    with _FETCHING_GUARD:
        return _FETCHING.setdefault(uri, threading.Lock())


FETCH_ATTEMPTS = 3
FETCH_BACKOFF = 0.5  # seconds before the second attempt; doubled for each one after


def fetch(
    uri: str, progress: Callable[[str], None] | None = None, attempts: int = FETCH_ATTEMPTS
) -> tuple[Path, str]:
    """Download a remote model once into the cache; its local path and a content digest.

    The cache is keyed by the object's identity (ETag, or size and date for HTTP), so a model
    re-uploaded to the same URI is fetched again and changes the API's version (Cortex hashed
    only the path and missed it). An unreachable origin is tried ``attempts`` times with
    back-off, then ``UnreachableError`` (``cached_copy`` has the last copy fetched).
    """
    from inferd.storage import remote

    say = progress or (lambda _text: None)
    if uri.startswith("s3://"):
        fetcher = remote.fetch_s3
    elif uri.startswith(("http://", "https://")):
        fetcher = remote.fetch_http
    elif uri.startswith(("gs://", "gcs://")):
        fetcher = remote.fetch_fsspec
    else:
        raise LoadError(f"unsupported model URI {uri!r} (use a project path, s3://, gs:// or http(s)://)")
    for attempt in range(attempts):
        try:
            with _fetching(uri):
                target, digest = fetcher(uri, say)
        except UnreachableError:
            if attempt == attempts - 1:
                raise
            time.sleep(FETCH_BACKOFF * 2**attempt)
            continue
        except OSError as exc:  # the cache's disk: full, read-only
            raise LoadError(f"{uri}: cannot download into {cache_dir()}: {exc.strerror or exc}") from exc
        _remember(uri, target, digest)
        return target, digest
    raise AssertionError("unreachable")  # pragma: no cover


def record_name(text: str) -> str:
    """The file name of the small record kept for a model URI (``last``) or an S3 object
    (``external``, ``BUCKET/KEY``): ``operator/prune.py`` finds a record's owner by it."""
    return hashlib.sha256(text.encode()).hexdigest()[:32] + ".json"


def _last_file(uri: str) -> Path:
    return cache_dir() / "models" / "last" / record_name(uri)


def _remember(uri: str, target: Path, digest: str) -> None:
    record = {"uri": uri, "path": str(target), "digest": digest, "fetched": time.time()}
    path = _last_file(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(record), encoding="utf-8")
    scratch.replace(path)


def recorded_path(text: str, cache: Path) -> Path:
    """A copy's path as a record in ``cache`` (``$INFERD_HOME/cache``) names it, read in this home:
    a record written before the home was moved (a bigger disk, a backup restored) names the old
    folder, so its copy was never found again (no copy to serve while the origin is down) and the
    collection removed the record."""
    path = Path(text)
    if path.exists():
        return path
    parts = path.parts
    for index in range(len(parts) - 2, -1, -1):  # the last: the home's own cache
        if parts[index : index + 2] == ("cache", "models"):
            return cache.joinpath("models", *parts[index + 2 :])
    return path


def cached_copy(uri: str) -> tuple[Path, str, float] | None:
    """The last copy of ``uri`` fetched here (path, digest, when), if it is still cached."""
    try:
        record = json.loads(_last_file(uri).read_text(encoding="utf-8"))
        path = recorded_path(str(record["path"]), cache_dir())
        found = (path, str(record["digest"]), float(record["fetched"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if path.exists() else None


def cached_target(key: str, name: str) -> tuple[Path, Path]:
    folder = cache_dir() / "models" / hashlib.sha256(key.encode()).hexdigest()[:32]
    return folder, folder / name


def publish(scratch: Path, folder: Path) -> None:
    """Move the filled ``scratch`` folder into place as ``folder``; ``scratch`` is gone after, in
    every case (kept, the collection would leave it while this process runs)."""
    try:
        (scratch / CREATED_MARK).write_text("")
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch.rename(folder)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
        if not folder.is_dir():
            raise  # else another download of the same model was published first: that one serves


def scratch_folder(parent: Path, prefix: str = "tmp") -> Path:
    """A new folder in ``parent`` to fill, then rename into place, marked as inferd's at once
    (``CREATED_MARK``): a crash leaves it to the collection, which removes no unmarked folder.
    The mark names this process (``scratch_owner``): while it runs, its folder is never taken."""
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        (scratch / CREATED_MARK).write_text(f"{os.getpid()} {started(os.getpid())}")
    except OSError:  # a full disk: unmarked, the folder would be no one's to collect, for good
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch


def scratch_owner_runs(scratch: Path) -> bool:
    """Whether the process that made ``scratch`` (named in its mark) still runs: the same pid,
    started at the same moment. A mark without one (an older inferd's) names none."""
    try:
        pid, _, start = (scratch / CREATED_MARK).read_text().partition(" ")
        return started(int(pid)) == int(start)
    except (OSError, ValueError):
        return False


def scratch_root() -> Path:
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root
