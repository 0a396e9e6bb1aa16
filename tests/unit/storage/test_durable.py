"""State written atomically is on the disk, name included, once the write returns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferd.storage import write_private


def test_a_private_file_and_the_rename_that_names_it_are_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # was: the file's bytes were synced, then renamed over state.json with the folder unsynced: a
    # power cut could bring back the old state.json, naming a version older than the one deployed
    synced: list[tuple[str, str]] = []  # (path synced, state.json's text then)
    real_fsync = os.fsync
    state = tmp_path / "home" / "state.json"

    def fsync(handle: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{handle}"), state.read_text() if state.exists() else ""))
        real_fsync(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    write_private(state, "version 2")
    assert state.read_text() == "version 2"
    assert synced[-1] == (str(state.parent), "version 2")  # the folder, after the rename
    assert any(os.path.basename(path).startswith(".state.json.") for path, _ in synced[:-1])


def test_the_folders_a_private_file_is_made_in_are_the_owners_only(tmp_path: Path) -> None:
    # Was: `inferd replay` wrote $INFERD_HOME/replays/DEPLOYMENT/API.json, and `replays` was made
    # by the umask (0755, as `mkdir -p` makes parents): in a home others may read, it listed the
    # deployments replayed.
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)  # whatever the umask (mkdir's mode is masked by it: 0700 under umask 077)
    write_private(home / "replays" / "shop" / "api.json", "{}")
    for folder in (home / "replays", home / "replays" / "shop"):
        assert folder.stat().st_mode & 0o777 == 0o700, (folder, oct(folder.stat().st_mode))
    assert home.stat().st_mode & 0o777 == 0o755  # a folder that was there is left as it is
