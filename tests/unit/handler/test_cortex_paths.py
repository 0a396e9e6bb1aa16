"""Which paths Cortex's /mnt/project mapping rewrites (the replica-level test is in tests/compat)."""

from __future__ import annotations

import subprocess
import sys
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


def test_the_mapped_functions_keep_what_os_says_they_support(tmp_path: Path) -> None:
    """shutil.rmtree picks its symlink-safe version by asking ``os.stat in os.supports_fd``; the
    wrappers must answer as the functions they replace (checked in a child: install is for good)."""
    script = (
        "import os, shutil, sys; from pathlib import Path; from inferd.handler import cortex_paths\n"
        "before = [f in s for f in (os.open, os.stat, os.scandir, os.listdir)"
        " for s in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks)]\n"
        "cortex_paths.install(Path(sys.argv[1]))\n"
        "assert os.stat.__inferd_mount__\n"
        "after = [f in s for f in (os.open, os.stat, os.scandir, os.listdir)"
        " for s in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks)]\n"
        "assert before == after, (before, after)\n"
        "import importlib; assert importlib.reload(shutil).rmtree.avoids_symlink_attacks\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)


def test_shutil_copies_and_links_work_under_mnt_project(tmp_path: Path) -> None:
    """``shutil.copy2``/``copytree`` also copy extended attributes (``os.listxattr``): each os
    function they reach must map the path, or a 2019 handler copying its model failed with
    "No such file or directory: '/mnt/project/...'" (checked in a child: install is for good)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.pkl").write_bytes(b"weights")
    script = (
        "import os, shutil, sys; from pathlib import Path; from inferd.handler import cortex_paths\n"
        "cortex_paths.install(Path(sys.argv[1]))\n"
        "shutil.copy2('/mnt/project/models/m.pkl', '/mnt/project/copy.pkl')\n"
        "shutil.copytree('/mnt/project/models', '/mnt/project/models2')\n"
        "os.link('/mnt/project/copy.pkl', '/mnt/project/linked.pkl')\n"
        "os.symlink('/mnt/project/copy.pkl', '/mnt/project/symlinked.pkl')\n"
        "assert open('/mnt/project/symlinked.pkl', 'rb').read() == b'weights'\n"
        "os.chown('/mnt/project/copy.pkl', os.getuid(), -1)\n"
        "assert os.statvfs('/mnt/project').f_bsize > 0\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    for name in ("copy.pkl", "models2/m.pkl", "linked.pkl", "symlinked.pkl"):
        assert (tmp_path / name).read_bytes() == b"weights"


def test_listings_of_mnt_project_leave_out_what_cortex_did_not_copy(tmp_path: Path) -> None:
    """Cortex's docs/dependencies/python-packages.md:17: bytecode files, files or folders that start
    with ``.`` and ``cortex.yaml`` are not in /mnt/project: a handler loading every file of a
    folder never met a ``.DS_Store``, nor inferd's own ``.inferd-files.json`` (checked in a child)."""
    for name in (
        "cortex.yaml",
        "handler.py",
        ".inferd-created",
        "data/a.json",
        "data/.DS_Store",
        "data/x.pyc",
    ):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}")
    (tmp_path / "data" / ".ipynb_checkpoints").mkdir()
    script = (
        "import glob, os, sys; from pathlib import Path; from inferd.handler import cortex_paths\n"
        "cortex_paths.install(Path(sys.argv[1]))\n"
        "assert sorted(os.listdir('/mnt/project')) == ['data', 'handler.py'], os.listdir('/mnt/project')\n"
        "assert sorted(os.listdir('/mnt/project/data')) == ['a.json']\n"
        "with os.scandir('/mnt/project/data') as found: assert [e.name for e in found] == ['a.json']\n"
        "assert [p.name for p in Path('/mnt/project/data').iterdir()] == ['a.json']\n"
        "walked = [(sorted(d), sorted(f)) for _, d, f in os.walk('/mnt/project')]\n"
        "assert walked == [(['data'], ['handler.py']), ([], ['a.json'])], walked\n"
        "assert glob.glob('/mnt/project/data/.*') == []\n"
        "assert len(os.listdir(sys.argv[1])) == 4  # the folder itself, by its own path: as it is\n"
        "import shutil; os.makedirs('/mnt/project/cache/.git'); shutil.rmtree('/mnt/project/cache')\n"
        "assert not os.path.exists(Path(sys.argv[1]) / 'cache')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
