"""The operator's state file: deployments keyed by name, API names kept per deployment."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import pytest

from inferd.errors import UsageError
from inferd.operator.snapshots import SNAPSHOT_FILES, snapshot_project
from inferd.operator.state import (
    STATE_FORMAT,
    DeploymentRecord,
    State,
    StateError,
    pending_record,
)
from inferd.storage import CREATED_MARK, inferd_home, pin_inferd_home

# What the version before per-deployment API names wrote: its format is read unchanged, since
# records were already per deployment and deleted APIs are bare names within their deployment.
PREVIOUS = {
    "deployments": {
        "iris": {
            "source": "/src/iris",
            "snapshot": "/home/projects/abc",
            "refresh": "",
            "updated": 1764000000.0,
            "deleted_apis": ["classifier"],
        },
        "garden": {"source": "/src/garden", "snapshot": "/home/projects/def"},
    }
}


def test_a_state_file_of_the_previous_version_loads(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps(PREVIOUS))
    state = State(tmp_path).load()
    assert sorted(state.deployments) == ["garden", "iris"]
    assert state.deployments["iris"].deleted_apis == ["classifier"]
    assert state.deployments["garden"].deleted_apis == []  # deleting iris's classifier left garden's
    state.save()
    assert State(tmp_path).load().deployments == state.deployments


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "cortex.yaml").write_text("- kind: deployment\n  name: d\n")
    (root / "models" / "m.onnx").write_bytes(b"weights")
    return root


def test_a_snapshot_leaves_out_fifos_devices_and_link_loops(tmp_path: Path) -> None:
    # Was: a FIFO in the project blocked the deploy forever (and `inferd down` with it); a link
    # to /dev/zero read without end; a link loop was an OSError out of the deploy.
    root = _project(tmp_path)
    fifo = root / "models" / "pipe"
    os.mkfifo(fifo)
    (root / "zero").symlink_to("/dev/zero")
    (root / "loop").symlink_to(root / "loop")
    (root / "passwd").symlink_to(root / "models" / "m.onnx")  # a link to a regular file: copied
    done = threading.Event()

    def unblock() -> None:  # so that code which opens the FIFO fails this test instead of hanging
        if not done.wait(10):
            with contextlib.suppress(OSError), open(fifo, "wb"):
                pass

    guard = threading.Thread(target=unblock)
    guard.start()
    try:
        snapshot = snapshot_project(root, tmp_path / "home")
    finally:
        done.set()
        guard.join()
    copied = sorted(str(path.relative_to(snapshot)) for path in snapshot.rglob("*") if path.is_file())
    assert copied == [CREATED_MARK, SNAPSHOT_FILES, "cortex.yaml", "models/m.onnx", "passwd"]
    assert (snapshot / "passwd").read_bytes() == b"weights"


@pytest.mark.parametrize(
    "text",
    [
        '{"deployments": []}',
        '{"deployments": {"iris": ["x"]}}',
        "[1]",
        "\xff\xfe",
        '{"deployments": 5}',
        # fields of the wrong type (was: a TypeError at every start, restarted every 10 s)
        '{"deployments": {"iris": {"source": 5, "snapshot": 7}}}',
        '{"deployments": {"iris": {"source": "/p", "snapshot": "/s", "uses": "abc"}}}',
        '{"deployments": {"iris": {"source": "/p", "snapshot": "/s", "uses": {"a": [1]}}}}',
    ],
)
def test_a_state_file_of_the_wrong_shape_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_text(text, encoding="latin-1")
    with pytest.raises(StateError, match="is corrupt"):
        State(tmp_path).load()


def test_a_state_file_of_a_newer_inferd_or_unreadable_says_so(tmp_path: Path) -> None:
    # Was: "is corrupt (...): fix it, or move it away to start with no deployments" for both: a
    # downgrade after an upgrade, or a state.json this user cannot read, invited moving it away.
    state = State(tmp_path)
    state.deployments["iris"] = DeploymentRecord(source="/p", snapshot="/s")
    state.save()
    data = json.loads((tmp_path / "state.json").read_text())
    assert data["format"] == 1  # older inferd versions read "deployments" only, and ignore it
    data["format"] = 2
    data["deployments"]["iris"]["a_field_of_tomorrow"] = 1
    (tmp_path / "state.json").write_text(json.dumps(data))
    with pytest.raises(
        StateError, match=r"written by a newer inferd \(state format 2; this one reads format 1\)"
    ):
        State(tmp_path).load()
    (tmp_path / "state.json").unlink()
    (tmp_path / "state.json").mkdir()  # root reads any file: a folder stands for one it cannot
    with pytest.raises(StateError, match=r"cannot read the state file .*state\.json \(Is a directory\)"):
        State(tmp_path).load()


# The record's fields as state format 1 has them. Every older inferd refuses a field it does not
# know and calls the file corrupt ("move it away to start with no deployments": the inferd of
# 2026-11-29 said it of updated_apis, that of 2026-11-27 of relax_pins); this one refuses it too.
# A new field takes STATE_FORMAT 2 and a new entry here, so that this inferd, given the file after
# a downgrade, says a newer inferd wrote it and changes nothing.
FORMAT_FIELDS = {
    1: {
        "source",
        "snapshot",
        "refresh",
        "relax_pins",
        "updated",
        "deleted_apis",
        "uses",
        "previous",
        "promoted",
        "updated_apis",
        "serving",
    }
}


def test_a_new_record_field_takes_the_next_state_format() -> None:
    fields = {field.name for field in dataclasses.fields(DeploymentRecord)}
    assert fields == FORMAT_FIELDS[STATE_FORMAT], (
        "DeploymentRecord's fields changed: an older inferd would call such a state.json corrupt; "
        "raise STATE_FORMAT and list the fields in FORMAT_FIELDS"
    )


def test_a_secrets_file_of_the_wrong_shape_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("[1, 2]")
    with pytest.raises(StateError, match=r"secrets\.json is corrupt"):
        State(tmp_path).load()


def test_a_new_snapshot_links_the_files_an_earlier_one_holds(tmp_path: Path) -> None:
    # Was: every changed deploy copied the whole project again: a handler edit beside a 1 GiB
    # model added 1 GiB to $INFERD_HOME (two snapshots kept: 2.1 GiB).
    root = _project(tmp_path)
    home = tmp_path / "home"
    first = snapshot_project(root, home)
    (root / "handler.py").write_text("def pre_inference(sample, signature, metadata): ...\n")
    second = snapshot_project(root, home)
    assert second != first
    old, new = (snapshot / "models" / "m.onnx" for snapshot in (first, second))
    assert new.read_bytes() == b"weights"
    assert os.path.samefile(old, new)  # one copy on disk
    (root / "models" / "m.onnx").write_bytes(b"retrained")  # new content: a copy of its own
    third = snapshot_project(root, home)
    assert (third / "models" / "m.onnx").read_bytes() == b"retrained"
    assert old.read_bytes() == b"weights"
    assert not os.path.samefile(old, third / "models" / "m.onnx")
    assert (third / "handler.py").samefile(second / "handler.py")


def test_a_file_written_inside_a_snapshot_is_not_linked_into_the_next(tmp_path: Path) -> None:
    # Was: a file a replica rewrote in its project folder (same size) kept its listed digest and
    # was hard-linked into the next snapshot: that deploy served the rewritten bytes, not the
    # project's own.
    root = _project(tmp_path)
    home = tmp_path / "home"
    first = snapshot_project(root, home)
    written = first / "models" / "m.onnx"
    written.write_bytes(b"WEIGHTS")  # same size, other content, written after the snapshot
    os.utime(written, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))  # past any clock tick
    (root / "handler.py").write_text("def pre_inference(sample, signature, metadata): ...\n")
    second = snapshot_project(root, home)
    assert (second / "models" / "m.onnx").read_bytes() == b"weights"
    assert not os.path.samefile(written, second / "models" / "m.onnx")


def test_file_names_that_are_not_utf_8_or_hold_a_newline_are_snapshotted(tmp_path: Path) -> None:
    # Was: a file name that is not UTF-8 failed the deploy with a UnicodeEncodeError.
    root = _project(tmp_path)
    raw = os.path.join(os.fsencode(root), b"caf\xe9.txt")
    with open(raw, "wb") as out:
        out.write(b"latin-1")
    (root / "two\nlines.txt").write_text("newline")
    snapshot = snapshot_project(root, tmp_path / "home")
    with open(os.path.join(os.fsencode(snapshot), b"caf\xe9.txt"), "rb") as copied:
        assert copied.read() == b"latin-1"
    assert (snapshot / "two\nlines.txt").read_text() == "newline"
    assert snapshot_project(root, tmp_path / "home") == snapshot  # the same name again


def test_an_inferd_home_inside_the_project_is_not_snapshotted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: with INFERD_HOME=project/state, each snapshot held the home: the snapshots before it
    # (nested deeper at every deploy), the logs, the admin token and secrets.json.
    root = _project(tmp_path)
    home = root / "state"
    monkeypatch.setenv("INFERD_HOME", str(home))
    first = snapshot_project(root, home)
    (home / "token").write_text("secret")
    (root / "handler.py").write_text("# edited\n")
    second = snapshot_project(root, home)
    copied = sorted(str(path.relative_to(second)) for path in second.rglob("*") if path.is_file())
    assert copied == [CREATED_MARK, SNAPSHOT_FILES, "cortex.yaml", "handler.py", "models/m.onnx"]
    assert first.parent == home / "projects"


def test_a_pending_record_restores_what_served_first_and_every_api_of_the_new_snapshot(
    tmp_path: Path,
) -> None:
    old = DeploymentRecord(
        source="/src",
        snapshot="/h/projects/old",
        serving="/h/projects/old",
        deleted_apis=["b"],
        uses={"a": ["/h/projects/old"]},
        promoted={"split": "a"},
    )
    pending = pending_record(old, tmp_path, Path("/h/projects/new"), "")
    assert pending.snapshot == "/h/projects/new" and pending.serving == "/h/projects/old"
    assert pending.uses == old.uses  # kept by an offline prune until the deploy records more
    assert pending.deleted_apis == [] and pending.promoted == {}  # the new project's APIs, all
    first = pending_record(None, tmp_path, Path("/h/projects/new"), "")
    assert first.serving == "" and first.snapshot == "/h/projects/new"


def test_an_empty_or_relative_inferd_home_is_never_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: `INFERD_HOME= inferd deploy .` wrote the token, state.json, logs and snapshots into
    # the project folder; a relative one was recorded in state.json relative to the deploy's folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("INFERD_HOME", "")
    assert inferd_home() == tmp_path / "user" / ".inferd"
    monkeypatch.setenv("INFERD_HOME", "state")
    assert inferd_home() == tmp_path / "state"
    # and so for the replicas the operator starts in their projects' folders (they wrote their
    # shared ONNX weights into the project's snapshot, under another `state`)
    assert pin_inferd_home() == tmp_path / "state"
    assert os.environ["INFERD_HOME"] == str(tmp_path / "state")
    monkeypatch.setenv("INFERD_HOME", "~/elsewhere")
    assert inferd_home() == tmp_path / "user" / "elsewhere"


def test_a_home_moved_elsewhere_keeps_its_deployments_and_snapshots(tmp_path: Path) -> None:
    # Was: `mv ~/.inferd /data/inferd` (a bigger disk, a backup restored), then INFERD_HOME set to
    # it: state.json named the old folder, so no deployment was restored, and the collection
    # removed every snapshot of the moved home, which no record named any more.
    from inferd.operator.prune import prune

    first = tmp_path / "home"
    snapshot = snapshot_project(_project(tmp_path), first)
    state = State(first)
    model = first / "cache" / "models" / "m"
    state.deployments["d"] = DeploymentRecord(
        source=str(tmp_path / "project"),
        snapshot=str(snapshot),
        uses={"api": [str(snapshot), str(model)]},
        previous={"api": [str(snapshot)]},
    )
    state.save()
    moved = tmp_path / "moved"
    first.rename(moved)
    loaded = State(moved).load().deployments["d"]
    assert loaded.snapshot == str(moved / "projects" / snapshot.name)
    assert loaded.uses == {"api": [loaded.snapshot, str(moved / "cache" / "models" / "m")]}
    assert loaded.source == str(tmp_path / "project")  # the user's folder is where it was
    prune(moved, loaded.kept())
    assert (moved / "projects" / snapshot.name / "cortex.yaml").is_file()


def test_no_home_folder_at_all_asks_for_inferd_home(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was: a RuntimeError traceback from every command ("Could not determine home directory"),
    # as in a container run as a user with no passwd entry and no HOME.
    import pwd

    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("INFERD_HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", unknown)
    with pytest.raises(UsageError, match="set INFERD_HOME"):
        inferd_home()
