"""Zipped SavedModels (Cortex's ``model: s3://.../bert.zip``): unpacked once into the cache; an
archive that would not fit on the disk (a zip bomb) is refused before anything is written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from inferd.errors import LoadError
from inferd.storage.layout import unpack_zip, unzipped_path

MEMBERS = 200
CLAIMED = 0xFFFFFFF0  # bytes each member's entry says it unpacks to (4 GiB, 800 GiB in all)


def bomb(path: Path) -> Path:
    """A small zip whose central directory claims ``MEMBERS`` x 4 GiB of content."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as bundle:
        for index in range(MEMBERS):
            bundle.writestr(f"1568244606/variables/part-{index}", b"0" * 16)
    data = bytearray(path.read_bytes())
    start = data.find(b"PK\x01\x02")
    while start != -1:  # central directory entries: uncompressed size at offset 24
        data[start + 24 : start + 28] = CLAIMED.to_bytes(4, "little")
        start = data.find(b"PK\x01\x02", start + 4)
    path.write_bytes(bytes(data))
    return path


def test_a_zip_bomb_is_refused_before_a_byte_is_written(tmp_path: Path) -> None:
    archive = bomb(tmp_path / "bert.zip")
    with zipfile.ZipFile(archive) as bundle:
        assert sum(info.file_size for info in bundle.infolist()) == MEMBERS * CLAIMED
    target = unzipped_path(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    before = sorted(target.parent.iterdir())
    with pytest.raises(LoadError, match=rf"bert.zip unpacks to {MEMBERS * CLAIMED} bytes, more than the"):
        unpack_zip(archive)
    assert sorted(target.parent.iterdir()) == before  # no unpacked folder, no scratch left


def test_a_zip_that_fits_is_unpacked_once(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("1568244606/saved_model.pb", b"pb")
    folder = unpack_zip(archive)
    assert (folder / "1568244606" / "saved_model.pb").read_bytes() == b"pb"
    assert unpack_zip(archive) == folder


def test_a_zip_another_replica_unpacked_meanwhile_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # replicas of one API start together: each unpacks, and all but the first find the folder made
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("model.onnx", b"onnx")
    extract = zipfile.ZipFile.extractall

    def and_another_finishes_first(self: zipfile.ZipFile, path: Path) -> None:
        extract(self, path)
        other = unzipped_path(archive)
        other.mkdir()
        (other / "model.onnx").write_bytes(b"onnx")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", and_another_finishes_first)
    unzipped_path(archive).parent.mkdir(parents=True, exist_ok=True)
    before = set(unzipped_path(archive).parent.iterdir())
    folder = unpack_zip(archive)
    assert (folder / "model.onnx").read_bytes() == b"onnx"
    assert set(folder.parent.iterdir()) - before == {folder}  # no scratch left


def test_a_member_named_outside_the_archive_is_refused_and_nothing_is_unpacked(tmp_path: Path) -> None:
    # a downloaded model's zip naming ../../x would write beside the cache (zipfile drops the ..
    # and unpacks it inside instead: a different model than the one its maker meant)
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("model.onnx", b"onnx")
        bundle.writestr("../../escaped.txt", b"x")
    target = unzipped_path(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    before = sorted(target.parent.iterdir())
    with pytest.raises(LoadError, match=r"^model.zip: member '../../escaped.txt' escapes the archive$"):
        unpack_zip(archive)
    assert sorted(target.parent.iterdir()) == before
    assert not list(tmp_path.rglob("escaped.txt"))
