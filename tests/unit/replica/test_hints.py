"""A replica's load error names what a deploy left out of the user's folder (hidden files, linked folders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.errors import LoadError
from inferd.replica.hints import left_out_hint


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    source, snapshot = tmp_path / "project", tmp_path / "snapshot"
    (tmp_path / "elsewhere" / "tables").mkdir(parents=True)
    (tmp_path / "elsewhere" / "tables" / "x.csv").write_text("1\n")
    source.mkdir()
    snapshot.mkdir()
    (source / "data").symlink_to(tmp_path / "elsewhere")
    (source / ".env").write_text("A=1\n")
    return source, snapshot


def test_a_file_under_a_linked_folder_is_named(tmp_path: Path) -> None:
    source, snapshot = _folders(tmp_path)
    with pytest.raises(FileNotFoundError) as caught:
        open(snapshot / "data" / "tables" / "x.csv")  # noqa: SIM115 - the error is what is wanted
    try:
        raise LoadError("loading failed") from caught.value
    except LoadError as exc:
        hint = left_out_hint(exc, snapshot, source)
    assert hint.startswith(f" (data is a link to a folder in {source}; a deploy copies the project's files")


def test_hidden_files_and_what_the_folder_lacks_too(tmp_path: Path) -> None:
    source, snapshot = _folders(tmp_path)
    hidden = FileNotFoundError(2, "No such file or directory", ".env")
    assert left_out_hint(hidden, snapshot, source).startswith(f" (.env is in {source}, but hidden files")
    assert left_out_hint(FileNotFoundError(2, "No such file", "other.csv"), snapshot, source) == ""
    assert (
        left_out_hint(ModuleNotFoundError("No module named 'numpyy'", name="numpyy"), snapshot, source) == ""
    )
    assert left_out_hint(ModuleNotFoundError("x", name="data.tables"), snapshot, None) == ""
    assert "data is a link" in left_out_hint(ModuleNotFoundError("x", name="data.tables"), snapshot, source)
