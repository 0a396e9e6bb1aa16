"""``gs://`` models go through fsspec (``remote.fetch_fsspec``): here its in-memory filesystem
stands in for Google Cloud Storage, which gcsfs reaches the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import fsspec
import pytest

from inferd.errors import LoadError
from inferd.storage import cache_dir, remote


def test_an_fsspec_model_is_downloaded_once_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README: gs:// (with gcsfs) models are downloaded once into $INFERD_HOME/cache/.
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/models/iris.onnx", b"model bytes")
    said: list[str] = []
    try:
        path, digest = remote.fetch_fsspec("memory://bucket/models/iris.onnx", said.append)
        again, same = remote.fetch_fsspec("memory://bucket/models/iris.onnx", said.append)
    finally:
        memory.rm("/bucket", recursive=True)
    assert path.read_bytes() == b"model bytes" and path.is_relative_to(cache_dir())
    assert (again, same) == (path, digest)
    assert said == ["downloading memory://bucket/models/iris.onnx"]  # once


def test_gs_without_gcsfs_says_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # not installed (as in inferd's own .venv)
    with pytest.raises(
        LoadError, match=r"gs://b/m\.onnx: .*gs:// models need the gcsfs package: pip install gcsfs"
    ):
        remote.fetch_fsspec("gs://b/m.onnx", print)
