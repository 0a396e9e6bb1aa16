"""Snapshots of large projects: a sparse file stays sparse, a project the disk cannot hold is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from inferd.operator import snapshots
from inferd.operator.snapshots import snapshot_project
from inferd.operator.state import StateError
from inferd.storage import durable

SIZE = 256 << 20


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "cortex.yaml").write_text("- kind: deployment\n  name: d\n")
    return root


def test_a_sparse_file_stays_sparse_in_the_snapshot(tmp_path: Path) -> None:
    # was: a 2 GiB sparse file (28 KiB on disk) took 2.1 GiB in the snapshot, written in full
    root = _project(tmp_path)
    with (root / "data.bin").open("wb") as out:
        out.write(b"head")
        out.seek(SIZE // 2)
        out.write(b"middle")
        out.truncate(SIZE)
    if (root / "data.bin").stat().st_blocks * 512 >= SIZE:
        pytest.skip("this file system keeps no sparse files")
    copy = snapshot_project(root, tmp_path / "home") / "data.bin"
    assert copy.stat().st_size == SIZE
    assert copy.stat().st_blocks * 512 < 1 << 20
    with copy.open("rb") as read:
        assert read.read(4) == b"head"
        read.seek(SIZE // 2)
        assert read.read(6) == b"middle"
        read.seek(SIZE - 4)
        assert read.read() == bytes(4)
    assert copy.stat().st_mtime_ns == (root / "data.bin").stat().st_mtime_ns  # as copy2 kept it


def test_a_project_the_disk_cannot_hold_is_refused_before_a_byte_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # was: the copy ran until the disk was full ("No space left on device"), with every other
    # writer on that disk (state.json, the logs, the other APIs' replicas) failing meanwhile
    root = _project(tmp_path)
    (root / "model.onnx").write_bytes(bytes(300_000))
    home = tmp_path / "home"

    def usage(path: str | Path) -> Usage:  # 200 kB free beyond the reserve
        return Usage(1 << 40, (1 << 40) - 200_000, 200_000 + snapshots.RESERVE_BYTES)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    with pytest.raises(StateError) as caught:
        snapshot_project(root, home)
    assert str(caught.value) == (
        f"No space left on device for the snapshot: the project's files need 293.0 KiB more in {home}, "
        "whose disk has 195.3 KiB free (beyond the "
        "64.0 MiB inferd keeps for its state and logs): nothing was deployed; free some space, or move "
        "files the APIs do not need out of the project folder"
    )
    assert not any((home / "projects").iterdir())
    monkeypatch.undo()
    first = snapshot_project(root, home)
    (root / "handler.py").write_text("x = 1\n")
    monkeypatch.setattr(shutil, "disk_usage", usage)
    second = snapshot_project(root, home)  # the model is linked from the first: nothing more to hold
    assert (second / "model.onnx").samefile(first / "model.onnx")


LINKED = (
    "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  predictor:\n    path: p.py\n    model: {}\n"
)


def test_a_deploy_error_names_only_the_linked_folders_its_paths_go_through(tmp_path: Path) -> None:
    # was: a model in a hidden folder (left out of snapshots, as Cortex's zip did) failed with
    # "... .models/w.txt does not exist in what is deployed: data is a link to a folder, ...:
    # make it a folder", of an unrelated link: the fix it said would change nothing
    from inferd.errors import ConfigError

    (tmp_path / "elsewhere").mkdir()
    root = _project(tmp_path)
    (root / "cortex.yaml").write_text(LINKED.format(".models/w.txt"))
    (root / "p.py").write_text("def predict(sample, metadata):\n    return 1\n")
    (root / ".models").mkdir()
    (root / ".models" / "w.txt").write_text("1\n")
    (root / "data").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError) as caught:
        snapshots.load_snapshot(snapshot_project(root, tmp_path / "home"), root)
    assert caught.value.message.endswith(
        f"predictor.model: .models/w.txt does not exist in what is deployed: .models is in {root}, but "
        "hidden files and folders are not deployed, as Cortex's project zip left them out: give it a name "
        "without the leading dot"
    )  # the hidden folder, which the user can rename (it said only "does not exist")
    # a model folder that is a link is still named
    (root / "weights").symlink_to(root / ".models")
    (root / "cortex.yaml").write_text(LINKED.format("weights/w.txt"))
    with pytest.raises(ConfigError) as caught:
        snapshots.load_snapshot(snapshot_project(root, tmp_path / "home"), root)
    assert "does not exist in what is deployed: weights is a link to a folder" in caught.value.message


def test_a_snapshot_is_on_the_disk_before_it_has_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # was: copied into the page cache only, then named in state.json (fsynced): a power cut
    # after `inferd deploy` said live could leave a state naming files the disk never got
    synced: list[tuple[str, bool]] = []  # (path, whether the snapshot had its name yet)
    real_fsync = os.fsync
    projects = tmp_path / "home" / "projects"

    def fsync(handle: int) -> None:
        path = os.readlink(f"/proc/self/fd/{handle}")
        named = any(not entry.name.startswith(".") for entry in projects.iterdir())
        synced.append((path, named))
        real_fsync(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    root = _project(tmp_path)
    (root / "models").mkdir()
    (root / "models" / "model.onnx").write_bytes(b"weights")
    target = snapshot_project(root, tmp_path / "home")
    before = [path for path, named in synced if not named]
    for relative in ("cortex.yaml", "models/model.onnx", "models", snapshots.SNAPSHOT_FILES):
        assert any(path.endswith("/" + relative) and "/.copy-" in path for path in before), relative
    assert (str(projects), True) in synced  # the rename into projects/, once done
    # a second version links what it has already: only the new file and the folders are synced
    synced.clear()
    (root / "handler.py").write_text("def predict(sample, metadata):\n    return 1\n")
    second = snapshot_project(root, tmp_path / "home")
    assert second != target
    names = [path.rsplit("/", 1)[-1] for path, _ in synced]
    assert "handler.py" in names
    assert "model.onnx" not in names


def test_a_snapshot_of_many_files_is_synced_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an fsync each: 2,000 small files spent 3.5 of a 6.0 s snapshot in them
    calls: list[str] = []
    monkeypatch.setattr(os, "fsync", lambda handle: calls.append(os.readlink(f"/proc/self/fd/{handle}")))
    monkeypatch.setattr(os, "sync", lambda: calls.append("sync"))  # was: every disk of the machine

    class Libc:
        def syncfs(self, handle: int) -> int:
            calls.append("syncfs " + os.readlink(f"/proc/self/fd/{handle}"))
            return 0

    monkeypatch.setattr(durable, "_LIBC", Libc())
    root = _project(tmp_path)
    for index in range(durable.MANY_FILES + 1):
        (root / f"m{index}.py").write_text(f"x = {index}\n")
    snapshot_project(root, tmp_path / "home")
    # one syncfs of the snapshot's file system (one file system: once), then the rename naming it
    assert len(calls) == 2 and calls[0].startswith(f"syncfs {tmp_path / 'home' / 'projects'}/.copy-")
    assert calls[1] == str(tmp_path / "home" / "projects")


def test_the_kernel_s_syncfs_writes_out_one_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sync() -> None:
        raise AssertionError("sync(2) waits for every disk of the machine")

    monkeypatch.setattr(os, "sync", sync)
    files = [tmp_path / f"f{index}" for index in range(3)]
    for path in files:
        path.write_text("x")
    durable.sync_file_systems(files)  # glibc's syncfs, for real
