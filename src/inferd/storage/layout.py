"""Model layouts on disk: which file or folder of a model path the runtime loads.

A SavedModel folder, a parent folder whose highest numeric version folder holds the SavedModel
(as TF Serving and Cortex did), a folder with the export deeper inside, or a ``.zip`` of any of
these, unpacked once into a cache keyed by the zip's content hash; an ONNX model given as a
``.zip`` (the model file and the external data files it names, one object to upload).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from inferd.errors import LoadError
from inferd.storage import CREATED_MARK, cache_dir, file_digest, scratch_folder

SAVED_MODEL_TREE = """expected a SavedModel, e.g.
  model/                       (or model/1/, model/2/: the highest number is served)
    saved_model.pb
    variables/variables.index
    variables/variables.data-00000-of-00001"""


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
