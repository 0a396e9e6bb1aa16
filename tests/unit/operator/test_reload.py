"""What an edit affects, and how a failure is located, for `inferd serve --reload`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest
import watchfiles

from inferd.config.load import load_project
from inferd.engine.local import LocalEngine
from inferd.operator.reload import Reloader, affected_apis, edited_paths, syntax_error, user_location

CONFIG = """\
- kind: deployment
  name: shop
- kind: api
  name: first
  onnx:
    model: models/first.onnx
    request_handler: handlers/first.py
- kind: api
  name: second
  tensorflow:
    model: models/second
    request_handler: handlers/second.py
"""


def write_project(root: Path, config: str = CONFIG) -> Path:
    for name in ("handlers/first.py", "handlers/second.py", "handlers/shared.py", "labels.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("def post_inference(prediction, signature, metadata):\n    return 1\n")
    (root / "models" / "second").mkdir(parents=True, exist_ok=True)
    (root / "models" / "first.onnx").write_bytes(b"onnx")
    (root / "models" / "second" / "saved_model.pb").write_bytes(b"pb")
    (root / "cortex.yaml").write_text(config)
    return root


def test_an_api_s_own_handler_or_model_affects_that_api_alone(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path))
    root = project.root
    assert affected_apis(project, project, [root / "handlers" / "first.py"]) == {"first"}
    assert affected_apis(project, project, [root / "models" / "first.onnx"]) == {"first"}
    assert affected_apis(project, project, [root / "models" / "second" / "saved_model.pb"]) == {"second"}


def test_any_other_file_affects_every_api(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path))
    changed = [project.root / "handlers" / "shared.py", project.root / "labels.txt"]
    assert affected_apis(project, project, changed) == {"first", "second"}


def test_the_config_affects_the_apis_whose_entry_changed(tmp_path: Path) -> None:
    old = load_project(write_project(tmp_path))
    (tmp_path / "cortex.yaml").write_text(CONFIG + "    metadata:\n      threshold: 2\n")
    new = load_project(tmp_path)
    assert affected_apis(old, new, [new.config_file]) == {"second"}
    assert affected_apis(old, old, [old.config_file]) == set()


def test_a_syntax_error_is_located_by_file_and_line(tmp_path: Path) -> None:
    handler = tmp_path / "handlers" / "h.py"
    handler.parent.mkdir()
    handler.write_text(
        "labels = ['a']\n\ndef post_inference(prediction, signature, metadata)\n    return 1\n"
    )
    error = syntax_error(handler, tmp_path)
    assert error is not None and error.startswith("handlers/h.py:3: SyntaxError: ")
    handler.write_text("labels = ['a']\n")
    assert syntax_error(handler, tmp_path) is None


def test_a_load_failure_is_located_at_the_deepest_project_frame(tmp_path: Path) -> None:
    detail = (
        "Traceback (most recent call last):\n"
        '  File "/site-packages/inferd/handler/loader.py", line 61, in _import\n'
        f'  File "{tmp_path}/handlers/h.py", line 2, in <module>\n'
        f'  File "{tmp_path}/lib/util.py", line 7, in <module>\n'
        "NameError: name 'x' is not defined"
    )
    assert user_location(detail, tmp_path) == "lib/util.py:7"
    assert user_location("no traceback here", tmp_path) is None


def test_scratch_files_an_editor_adds_and_removes_are_left_out(tmp_path: Path) -> None:
    kept = tmp_path / "h.py"
    kept.write_text("x = 1\n")
    gone = tmp_path / "old.py"  # existed before, deleted by the user: an edit
    changes = {
        (watchfiles.Change.modified, str(kept)),
        (watchfiles.Change.added, str(tmp_path / "sedXYZ")),
        (watchfiles.Change.deleted, str(tmp_path / "sedXYZ")),
        (watchfiles.Change.deleted, str(gone)),
    }
    assert edited_paths(changes, tmp_path) == {kept, gone}


def test_log_files_are_no_edits(tmp_path: Path) -> None:
    # ``inferd serve . --reload > serve.log``: a reload that says so would be an edit, forever.
    for name in ("serve.log", "serve.log.1", "h.py"):
        (tmp_path / name).write_text("x = 1\n")
    changes = {
        (watchfiles.Change.modified, str(tmp_path / name)) for name in ("serve.log", "serve.log.1", "h.py")
    }
    assert edited_paths(changes, tmp_path) == {tmp_path / "h.py"}


def test_hidden_files_and_folders_are_no_edits(tmp_path: Path) -> None:
    # No version counts them (storage.project_files), so a handler may keep its own files
    # there: one it wrote at each load was an edit that started the next load, forever.
    (tmp_path / ".cache").mkdir()
    for name in (".cache/state.txt", ".stamp", "h.py"):
        (tmp_path / name).write_text("x = 1\n")
    changes = {
        (watchfiles.Change.modified, str(tmp_path / name))
        for name in (".cache", ".cache/state.txt", ".stamp", "h.py")
    }
    assert edited_paths(changes, tmp_path) == {tmp_path / "h.py"}


def test_a_watch_that_fails_after_it_began_is_said_not_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polling (the fallback where no inotify is left, or WATCHFILES_FORCE_POLLING) fails mid-way
    # on a folder it cannot scan: here a symlink loop made as the watch began. watchfiles raised
    # that inside its task group, an ExceptionGroup the fallback did not catch: the watch ended
    # without a word (and "Task exception was never retrieved"), and no edit was reloaded again.
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "1")
    root = write_project(tmp_path / "shop")
    (root / ".cache").mkdir()  # hidden: the loop made in it is no edit to roll out
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if "watching" in line and "for changes" in line:
            (root / ".cache" / "loop").symlink_to("..")

    reloader = Reloader(load_project(root), cast(LocalEngine, None), say)

    async def watch() -> None:
        stop = asyncio.Event()
        try:
            await asyncio.wait_for(reloader.run(stop), 60)
        finally:
            stop.set()

    asyncio.run(watch())
    assert said[-1].startswith(f"inferd: --reload cannot watch {root} (")
    assert "File system loop" in said[-1]
    assert said[-1].endswith("; the APIs serve without reloading")
