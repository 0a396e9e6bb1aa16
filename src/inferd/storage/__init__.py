"""Model sources: a model URI -> a local path (project files, or a cache of remote objects).

TensorFlow layouts are resolved here too: a SavedModel folder, a parent folder whose highest
numeric version folder holds the SavedModel (as TF Serving and Cortex did), or a ``.zip`` of
either, unpacked once into a cache keyed by the zip's content hash; so is an ONNX model given as a
``.zip`` (the model file and the external data files it names, one object to upload). The downloads themselves
(``s3://``, ``http(s)://``, ``gs://``) are in ``storage.remote``.
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
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path

from inferd.errors import ConfigError, LoadError, UnreachableError, UsageError
from inferd.storage.durable import sync_entries
from inferd.storage.private import refuse_a_home_others_control

SAVED_MODEL_TREE = """expected a SavedModel, e.g.
  model/                       (or model/1/, model/2/: the highest number is served)
    saved_model.pb
    variables/variables.index
    variables/variables.data-00000-of-00001"""


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
        return reason
    return home_refusal(exc) or f"{reason} ({Path(os.fsdecode(exc.filename))})"


def home_refusal(exc: OSError, home: Path | None = None) -> str | None:
    """The sentence for ``exc`` when it is the machine refusing the home (``INFERD_HOME``, or
    ``home``) or a path under it: a home that is a file, a folder that cannot be written."""
    if not exc.filename or exc.errno not in _HOME_REFUSALS:
        return None
    filename = Path(os.fsdecode(exc.filename))
    home = home or inferd_home()
    if not (filename == home or home in filename.parents):
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


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # a link loop, a dangling link
        return False


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path``, readable by this user only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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


def unzipped_path(archive: Path) -> Path:
    """Where ``unpack_zip`` puts ``archive``'s content."""
    return cache_dir() / "unzipped" / file_digest(archive)[:32]


def model_files(model_path: Path | None) -> tuple[Path, ...]:
    """What serving ``model_path`` reads: the path, and its unpacked copy for a ``.zip``."""
    if model_path is None:
        return ()
    if model_path.suffix == ".zip" and model_path.is_file():
        return (model_path, unzipped_path(model_path))
    return (model_path,)


UNZIP_HEADROOM = 256 << 20  # bytes an unpacked model must leave free on the cache's disk


def unpack_zip(archive: Path) -> Path:
    """Unpack ``archive`` once into the cache; the folder it was unpacked into."""
    target = unzipped_path(archive)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_folder(target.parent)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                resolved = (scratch / member).resolve()
                if scratch.resolve() not in resolved.parents and resolved != scratch.resolve():
                    raise LoadError(f"{archive.name}: member {member!r} escapes the archive")
            # A member never unpacks to more than the size its entry declares (zipfile stops
            # there), so a zip bomb is refused before a byte is written, not when the disk fills.
            unpacked = sum(info.file_size for info in bundle.infolist())
            free = shutil.disk_usage(scratch).free - UNZIP_HEADROOM
            if unpacked > free:
                raise LoadError(
                    f"{archive.name} unpacks to {unpacked} bytes, more than the {max(free, 0)} "
                    f"bytes free in {target.parent} (keeping {UNZIP_HEADROOM >> 20} MiB free)"
                )
            bundle.extractall(scratch)
        (scratch / CREATED_MARK).write_text("")
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():
                raise  # else another replica unpacked the same archive first: use that one
    except zipfile.BadZipFile as exc:
        raise LoadError(f"{archive.name} is not a valid zip file: {exc}") from exc
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def find_onnx_model(path: Path) -> Path:
    """The ONNX model file to load for ``path``: itself, or the one ``.onnx`` file in a ``.zip``
    (at any depth, its external data files beside it), unpacked once into the cache."""
    if not (path.suffix == ".zip" and path.is_file()):
        return path
    folder = unpack_zip(path)
    found = sorted(
        model for model in folder.rglob("*.onnx") if model.is_file() and "__MACOSX" not in model.parts
    )
    if len(found) != 1:
        names = ", ".join(model.relative_to(folder).as_posix() for model in found)
        what = f"{len(found)} .onnx files ({names})" if found else "no .onnx file"
        raise LoadError(
            f"{path.name} holds {what}; an ONNX model's zip holds one model file and its data files"
        )
    return found[0]


def _is_saved_model(folder: Path) -> bool:
    return (folder / "saved_model.pb").is_file()


def find_saved_model(path: Path) -> Path:
    """Resolve a SavedModel folder, version parent, or zip to the folder holding saved_model.pb."""
    if path.is_file() and path.suffix == ".zip":
        path = unpack_zip(path)
    if not path.is_dir():
        raise LoadError(f"{path} is not a folder or .zip; {SAVED_MODEL_TREE}")
    for candidate in (path, *_only_child(path)):
        if _is_saved_model(candidate):
            return candidate
        versions = sorted(
            (int(child.name), child)
            for child in candidate.iterdir()
            if child.is_dir() and child.name.isdigit() and _is_saved_model(child)
        )
        if versions:
            return versions[-1][1]
    nested = _nested_saved_model(path)
    if nested is not None:
        return nested
    raise LoadError(f"{path} holds no SavedModel; {SAVED_MODEL_TREE}")


def _nested_saved_model(path: Path) -> Path | None:
    """A SavedModel deeper in ``path``: Cortex took a checkpoint folder with the export inside.

    ``estimator.train_and_evaluate`` leaves ``model_dir/export/<exporter>/<timestamp>/`` beside
    its checkpoints, and Cortex's docs say to upload that folder as it is; Cortex served any
    SavedModel found under the path. The highest numeric version folder wins (the newest
    export), then the last path in sorted order, as Cortex's S3 listing ordered them.
    """
    found = [
        pb.parent
        for pb in path.rglob("saved_model.pb")
        if pb.is_file() and not any(part.startswith(".") for part in pb.relative_to(path).parts)
    ]
    if not found:
        return None

    def rank(folder: Path) -> tuple[int, str]:
        return (int(folder.name) if folder.name.isdigit() else -1, folder.as_posix())

    return max(found, key=rank)


def _only_child(path: Path) -> list[Path]:
    # A zip of a folder unpacks into that one folder.
    children = [child for child in path.iterdir() if not child.name.startswith((".", "__MACOSX"))]
    return children if len(children) == 1 and children[0].is_dir() else []


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
    (scratch / CREATED_MARK).write_text("")
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        scratch.rename(folder)


def scratch_folder(parent: Path, prefix: str = "tmp") -> Path:
    """A new folder in ``parent`` to fill, then rename into place, marked as inferd's at once
    (``CREATED_MARK``): a crash leaves it to the collection, which removes no unmarked folder."""
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    (scratch / CREATED_MARK).write_text("")
    return scratch


def scratch_root() -> Path:
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root
