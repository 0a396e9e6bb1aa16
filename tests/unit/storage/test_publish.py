"""Publishing a download: its scratch folder moved into the cache, and never left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from inferd.storage import CREATED_MARK, publish, scratch_folder


def test_a_download_is_published_marked_and_its_scratch_folder_is_gone(tmp_path: Path) -> None:
    scratch = scratch_folder(tmp_path / "models")
    (scratch / "m.onnx").write_bytes(b"model")
    publish(scratch, tmp_path / "models" / "abc")
    assert (tmp_path / "models" / "abc" / "m.onnx").read_bytes() == b"model"
    assert (tmp_path / "models" / "abc" / CREATED_MARK).read_text() == ""  # the same in every copy
    assert not scratch.exists()
    # the same model downloaded again beside it: the first copy serves, the second goes
    again = scratch_folder(tmp_path / "models")
    (again / "m.onnx").write_bytes(b"model")
    publish(again, tmp_path / "models" / "abc")
    assert not again.exists() and sorted(p.name for p in (tmp_path / "models").iterdir()) == ["abc"]


def test_a_download_that_cannot_be_published_takes_its_scratch_folder_with_it(tmp_path: Path) -> None:
    # The collection keeps the scratch folders of a process that still runs: one left by a failed
    # publish stayed until the operator's end.
    scratch = scratch_folder(tmp_path / "models")
    (scratch / "m.onnx").write_bytes(b"model")
    (tmp_path / "taken").write_text("a file where the cache's folder would go")
    with pytest.raises(OSError):
        publish(scratch, tmp_path / "taken" / "abc")
    assert not scratch.exists()


def test_a_scratch_folder_whose_mark_cannot_be_written_is_not_left_behind(tmp_path: Path) -> None:
    # On a full disk the folder was made and its mark was not: a folder the collection never
    # takes (it removes only what inferd marked), left for good.
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)], check=True)
    try:
        (disk / "filler").write_bytes(b"x" * 4096)  # the one page this disk has
        with pytest.raises(OSError):
            scratch_folder(disk / "models")
        assert list((disk / "models").iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
