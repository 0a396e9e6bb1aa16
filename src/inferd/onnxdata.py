"""The external data files an ONNX model file names: the weights saved beside it.

``onnx.save_model(..., save_as_external_data=True)`` (the usual way for models over protobuf's
2 GB limit, and common for large ones under it) writes a small model file and the weights in one
or more files beside it, each tensor naming its file by a path relative to the model's folder.
Both the download of a remote model (``storage``) and weight sharing (``runtimes.onnx_shared``)
need those names. They are found by scanning the model's bytes for external data entries rather
than parsing it, so the ``onnx`` package is not needed where only onnxruntime is installed, and
a mapped file is never read onto the heap.
"""

from __future__ import annotations

import mmap
import os
import posixpath
from pathlib import Path

# An external data entry of an ONNX tensor: the key "location" (StringStringEntryProto's field 1,
# length 8), then the file's name as field 2.
LOCATION = b"\x0a\x08location\x12"


def external_names(data: bytes | mmap.mmap) -> set[str]:
    """The relative paths named by the external data entries in a model's bytes.

    Paths that could leave the model's folder (absolute, ``..``) are left out: onnxruntime refuses
    them too.
    """
    names: set[str] = set()
    found = data.find(LOCATION)
    while found >= 0:
        start = found + len(LOCATION)
        length, shift = 0, 0
        while start < len(data) and shift < 35:  # the name's length, a protobuf varint
            byte = data[start]
            length |= (byte & 0x7F) << shift
            start += 1
            shift += 7
            if byte < 0x80:
                break
        name = data[start : start + length].decode("utf-8", "replace").replace("\\", "/")
        normal = posixpath.normpath(name) if name else ""
        if (
            normal
            and "\0" not in normal
            and not normal.startswith(("/", "../"))
            and normal not in (".", "..")
        ):
            names.add(normal)
        found = data.find(LOCATION, start + length)
    return names


def external_files(model_path: Path) -> list[Path]:
    """The external data files that the model file names and that exist beside it."""
    with model_path.open("rb") as handle:
        if not os.fstat(handle.fileno()).st_size:
            return []
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            names = external_names(data)
    folder = model_path.parent.resolve()
    files = {(folder / name).resolve() for name in names}
    return sorted(path for path in files if path.is_file() and path.is_relative_to(folder))
