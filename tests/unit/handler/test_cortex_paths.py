"""Which paths Cortex's /mnt/project mapping rewrites (the replica-level test is in tests/compat)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from inferd.handler import cortex_paths


def test_only_paths_under_mnt_project_are_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cortex_paths, "_root", "/srv/proj")
    mapped = cortex_paths.mapped
    assert mapped("/mnt/project/config.json") == "/srv/proj/config.json"
    assert mapped("/mnt/project") == "/srv/proj"
    assert mapped(PurePosixPath("/mnt/project/a/b.txt")) == "/srv/proj/a/b.txt"
    assert mapped(b"/mnt/project/x") == b"/srv/proj/x"
    for untouched in ("/mnt/projects/x", "/mnt/project2", "mnt/project/x", "/mnt/model/w.pth", "config.json"):
        assert mapped(untouched) == untouched
    assert mapped(3) == 3  # a file descriptor


def test_nothing_is_mapped_before_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cortex_paths, "_root", None)
    assert cortex_paths.mapped("/mnt/project/config.json") == "/mnt/project/config.json"
    assert cortex_paths.mapped(Path("/mnt/project")) == Path("/mnt/project")
