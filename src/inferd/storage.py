"""Model sources: a model URI -> a local path (project files, or a cache of remote objects).

TensorFlow layouts are resolved here too: a SavedModel folder, a parent folder whose highest
numeric version folder holds the SavedModel (as TF Serving and Cortex did), or a ``.zip`` of
either, unpacked once into a cache keyed by the zip's content hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from inferd.errors import LoadError

SAVED_MODEL_TREE = """expected a SavedModel, e.g.
  model/                       (or model/1/, model/2/: the highest number is served)
    saved_model.pb
    variables/variables.index
    variables/variables.data-00000-of-00001"""


def cache_dir() -> Path:
    """Where downloaded and unpacked models live (``$INFERD_HOME/cache``)."""
    home = Path(os.environ.get("INFERD_HOME", Path.home() / ".inferd"))
    return home / "cache"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(path: Path) -> str:
    """SHA-256 over a file, or over every file of a folder (names and contents)."""
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(file_digest(child).encode())
    return digest.hexdigest()


def local_model_path(uri: str, project_root: Path) -> Path:
    """The local path of a model URI relative to the project folder."""
    path = Path(uri)
    return path if path.is_absolute() else (project_root / path).resolve()


def unpack_zip(archive: Path) -> Path:
    """Unpack ``archive`` once into the cache; the folder it was unpacked into."""
    target = cache_dir() / "unzipped" / file_digest(archive)[:32]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                resolved = (scratch / member).resolve()
                if scratch.resolve() not in resolved.parents and resolved != scratch.resolve():
                    raise LoadError(f"{archive.name}: member {member!r} escapes the archive")
            bundle.extractall(scratch)
        scratch.rename(target)
    except zipfile.BadZipFile as exc:
        raise LoadError(f"{archive.name} is not a valid zip file: {exc}") from exc
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


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
    raise LoadError(f"{path} holds no SavedModel; {SAVED_MODEL_TREE}")


def _only_child(path: Path) -> list[Path]:
    # A zip of a folder unpacks into that one folder.
    children = [child for child in path.iterdir() if not child.name.startswith((".", "__MACOSX"))]
    return children if len(children) == 1 and children[0].is_dir() else []
