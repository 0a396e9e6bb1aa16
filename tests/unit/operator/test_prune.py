"""Garbage collection decides from names, inferd's mark and what is kept; never touches the rest."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inferd import logfiles
from inferd.operator import prune as prune_module
from inferd.operator.prune import TRASH, Collector, Pruned, forget_apis, human_bytes, prune, usage
from inferd.storage import CREATED_MARK, cached_copy, record_name, scratch_folder


def made(folder: Path, size: int = 100, mark: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "data").write_bytes(b"x" * size)
    if mark:
        (folder / CREATED_MARK).write_text("")
    return folder


def aged(folder: Path, seconds: float = 7200) -> Path:
    """``folder`` and everything in it last changed ``seconds`` ago."""
    then = time.time() - seconds
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (then, then))
    return folder


def test_only_unused_folders_inferd_created_are_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    running = made(home / "projects" / ("a" * 24))
    previous = made(home / "projects" / ("b" * 24))
    old = made(home / "projects" / ("c" * 24), size=1000)
    lookalike = made(home / "projects" / ("d" * 24), mark=False)
    model = made(home / "cache" / "models" / ("e" * 32))
    old_model = made(home / "cache" / "models" / ("f" * 32))
    env = made(home / "envs" / ("1" * 24))
    other = made(home / "envs" / "mine", mark=True)
    fresh_scratch = made(home / "envs" / ".installing-abc")
    stale_scratch = aged(made(home / "cache" / "models" / "tmpxyz"))
    keep = {running, previous / "handler.py", model / "iris.onnx", env}

    result = prune(home, keep)

    assert not old.exists() and not old_model.exists() and not stale_scratch.exists()
    for kept in (running, previous, lookalike, model, env, other, fresh_scratch):
        assert kept.exists()
    assert result.removed == {"snapshots": 1, "models": 1, "scratch folders": 1}
    assert result.freed >= 1200 and result.summary().startswith("freed 1.")
    assert result.summary().endswith(" (1 models, 1 scratch folders, 1 snapshots)")  # README's form
    assert not (home / TRASH).exists()


def test_a_home_holding_the_users_folders_loses_none_of_them(tmp_path: Path) -> None:
    # Was: with INFERD_HOME a folder of the user's (their home), `inferd prune` and the
    # operator's collection removed ~/projects/tmp_experiment (a name like inferd's scratch
    # folders, older than an hour) and everything in ~/.trash.
    home = tmp_path / "home"
    mine = made(home / "projects" / "tmp_experiment", mark=False)
    also_mine = made(home / "envs" / ".installing-notes", mark=False)
    trash = made(home / ".trash", mark=False)
    os.utime(mine, (time.time() - 7200, time.time() - 7200))
    os.utime(also_mine, (time.time() - 7200, time.time() - 7200))
    crashed = aged(made(home / "projects" / ".copy-abc"))  # a scratch folder inferd made and a crash left
    unused = made(home / "projects" / ("c" * 24))

    result = prune(home, set())

    assert mine.exists() and also_mine.exists() and (trash / "data").is_file()
    assert not crashed.exists() and not unused.exists()
    assert result.removed == {"snapshots": 1, "scratch folders": 1}
    assert sorted(path.name for path in home.iterdir()) == [".trash", "envs", "projects"]


def test_a_trash_folder_inferd_did_not_make_stops_the_collection(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / TRASH).mkdir(parents=True)
    (home / TRASH / "keep.txt").write_text("the user's")
    unused = made(home / "projects" / ("c" * 24))
    assert prune(home, set()).removed == {}
    assert unused.exists() and (home / TRASH / "keep.txt").is_file()


def test_usage_and_sizes(tmp_path: Path) -> None:
    made(tmp_path / "logs" / "x", size=2048, mark=False)
    parts = usage(tmp_path)
    assert parts["logs"] == 2048 and parts["total"] == 2048 and parts["projects"] == 0
    assert human_bytes(512) == "512 B" and human_bytes(3 << 20) == "3.0 MiB"


def loaded_by(copy: Path, pid: int) -> Path:
    """Mark the shared copy ``copy`` as loaded by process ``pid`` (as a replica marks it)."""
    (copy / "replicas").mkdir()
    (copy / "replicas" / str(pid)).touch()
    return copy


def test_shared_weights_stay_while_a_running_process_loaded_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shared = home / "cache" / "shared"
    loaded = loaded_by(made(shared / ("a" * 32)), os.getpid())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    gone = loaded_by(made(shared / ("b" * 32)), pid_max + 1)  # no process can have this pid
    never = made(shared / ("c" * 32))
    busy = made(shared / ("d" * 32))  # a replica is making or registering it: it holds the lock
    with (shared / f".{busy.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prune(home, set())
    assert loaded.exists() and busy.exists()
    assert not gone.exists() and not never.exists()


def test_the_lock_of_a_collected_copy_goes_with_it(tmp_path: Path) -> None:
    # An empty `.<key>.lock` stayed for every model ever shared: a home whose model changed at
    # each deploy gathered one a deploy, for good.
    home = tmp_path / "home"
    shared = home / "cache" / "shared"
    loaded = loaded_by(made(shared / ("a" * 32)), os.getpid())
    gone = made(shared / ("b" * 32))
    busy = made(shared / ("d" * 32))
    for key in ("a", "b", "c", "d"):  # c: a copy an older inferd collected, its lock left behind
        (shared / f".{key * 32}.lock").touch()
    (shared / f".{'e' * 32}.plain").write_text("not shareable\n")  # kept: not tried again
    (shared / ".notes.lock").write_text("the user's")  # not a name inferd gives
    with (shared / f".{busy.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prune(home, set())
    assert not gone.exists() and loaded.exists() and busy.exists()
    assert sorted(p.name for p in shared.iterdir() if p.name.startswith(".")) == sorted(
        [f".{'a' * 32}.lock", f".{'d' * 32}.lock", f".{'e' * 32}.plain", ".notes.lock"]
    )


def test_the_logs_of_gone_apis_go_and_nothing_else(tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = [
        "logs/keep/stays.log",
        "logs/keep/stays.access.log",
        "logs/keep/gone.log",
        "logs/keep/gone.log.1",
        "logs/keep/gone.access.log",
        "payloads/keep/gone.jsonl",
        "payloads/keep/gone.jsonl.1",
        "logs/old/x.log",
        "payloads/old/x.jsonl",
        "logs/keep/notes.txt",  # not a name inferd gives: the user's
        "logs/mine/Notes.log",
        "operator.log",
    ]
    for name in files:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("x" * 10)
    held = (home / "logs" / "keep" / "open.log").open("w")  # a writer still has it: left
    try:
        pruned = forget_apis(home, {"keep", "mine"}, {"keep/stays"})
    finally:
        held.close()
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert left == [
        "logs/keep/notes.txt",
        "logs/keep/open.log",
        "logs/keep/stays.access.log",
        "logs/keep/stays.log",
        "logs/mine/Notes.log",
        "operator.log",
    ]
    assert not (home / "logs" / "old").exists() and not (home / "payloads" / "old").exists()
    assert pruned.removed == {"logs of deleted APIs": 2} and pruned.freed == 70
    # Without the operator, only what the recorded deployments no longer hold is known.
    (home / "logs" / "keep" / "other.log").write_text("x")
    assert forget_apis(home, {"keep", "mine"}).removed == {}
    assert forget_apis(home, {"mine"}).removed == {"logs of deleted APIs": 3}  # stays, open, other
    assert (home / "logs" / "keep" / "notes.txt").exists()


def test_a_python_client_project_being_deployed_stays(tmp_path: Path) -> None:
    """README: the project the Python client wrote for a deleted deployment goes with a prune,
    unless the client is deploying it again at that moment (it holds its deployment's lock)."""
    from inferd.sdk import Client

    home = tmp_path / "home"
    project = home / "workspace" / "again"
    (project / "api").mkdir(parents=True)
    (project / CREATED_MARK).write_text("")
    with Client(home=home)._locked("again"):  # as deploy() holds it while it writes and deploys
        assert forget_apis(home, set()).removed == {}
    assert project.is_dir()
    assert forget_apis(home, set()).removed == {"Python client projects": 1}
    assert not project.exists()


def test_a_python_client_project_deployed_while_prune_ran_stays(tmp_path: Path) -> None:
    """`inferd prune` with no operator running reads the recorded deployments first, then frees
    snapshots and environments (seconds, for large ones): a client that started the operator and
    deployed meanwhile is recorded by the time the prune reaches its project, which stays. Was:
    removed, and the client's next deploy of another API there removed the first API (the
    project's cortex.yaml lists the API folders it holds)."""
    home = tmp_path / "home"
    project = home / "workspace" / "late"
    (project / "api").mkdir(parents=True)
    (project / CREATED_MARK).write_text("")
    record = {"source": str(project), "snapshot": str(home / "projects" / "late")}
    (home / "state.json").write_text(json.dumps({"deployments": {"late": record}}))
    assert forget_apis(home, set()).removed == {}  # ``set()``: what it read before the deploy
    assert project.is_dir()


def test_the_records_of_model_uris_go_with_their_cached_copies(tmp_path: Path) -> None:
    # One record per model URI ever fetched (what serves while its origin is down) and one per
    # S3 ONNX object (its external data files): a CI deploying a new path per build left
    # thousands. They go with their copy; nothing else in the folders is touched.
    home = tmp_path / "home"
    kept_copy = made(home / "cache" / "models" / ("a" * 32))
    pruned_copy = made(home / "cache" / "models" / ("b" * 32))
    last, external = home / "cache" / "models" / "last", home / "cache" / "models" / "external"
    last.mkdir()
    external.mkdir()
    records = {}
    for name, copy in (("kept", kept_copy), ("pruned", pruned_copy)):
        uri = f"s3://models/{name}.onnx"
        records[name] = last / record_name(uri)
        records[name].write_text(
            json.dumps({"uri": uri, "path": str(copy / "data"), "digest": "d", "fetched": 1.0})
        )
        records[f"{name} external"] = external / record_name(f"models/{name}.onnx")
        records[f"{name} external"].write_text("{}")
    hour_ago = time.time() - 7200
    for path in (records["kept external"], records["pruned external"]):
        os.utime(path, (hour_ago, hour_ago))
    fresh = external / record_name("models/downloading.onnx")  # its download is writing it now
    fresh.write_text("{}")
    unknown = last / "notes.json"
    unknown.write_text("mine")

    prune(home, {kept_copy})

    assert not pruned_copy.exists()
    assert not records["pruned"].exists() and not records["pruned external"].exists()
    assert records["kept"].exists() and records["kept external"].exists()
    assert fresh.exists() and unknown.read_text() == "mine"


def test_a_trash_an_interrupted_collection_left_is_emptied_by_the_next(tmp_path: Path) -> None:
    # The operator killed while it deleted a large copy (kill -9, the OOM killer, a reboot):
    # was: the trash kept it for good, `inferd prune` said "freed 0 B" (only a collection that
    # moved something new emptied it).
    trash = tmp_path / TRASH
    (trash / "cache-models-abc-1").mkdir(parents=True)
    (trash / CREATED_MARK).write_text("")
    (trash / "cache-models-abc-1" / "model.onnx").write_bytes(b"x" * 5000)

    async def collect() -> Pruned | None:
        collector = Collector(tmp_path, set, lambda: False)
        measured = collector.collect()
        result = None if measured is None else await measured
        await asyncio.gather(*collector._tasks)
        return result

    result = asyncio.run(collect())
    assert result is not None and result.freed >= 5000
    assert "leftovers" in result.summary()
    assert not trash.exists()
    assert prune(tmp_path, []).freed == 0  # nothing left to free


def test_what_a_collection_takes_is_measured_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: every file of each unused snapshot, model and environment was measured (an lstat
    # each) on the event loop that answers the APIs' requests: after each deploy of a project
    # of 20,000 files, every API's requests waited 150 ms for its oldest snapshot's walk.
    old = made(tmp_path / "projects" / ("c" * 24), size=5000)
    walked_in: list[threading.Thread] = []

    def folder_bytes(folder: Path) -> int:
        walked_in.append(threading.current_thread())
        return logfiles.folder_bytes(folder)

    monkeypatch.setattr(prune_module, "folder_bytes", folder_bytes)

    async def collect() -> tuple[Pruned | None, threading.Thread]:
        collector = Collector(tmp_path, set, lambda: False)
        measured = collector.collect()
        result = None if measured is None else await measured
        await asyncio.gather(*collector._tasks)
        return result, threading.current_thread()

    result, loop_thread = asyncio.run(collect())
    assert result is not None and result.freed >= 5000 and result.removed == {"snapshots": 1}
    assert not old.exists()
    assert walked_in and loop_thread not in walked_in


def test_a_scratch_folder_whose_files_are_still_written_is_kept(tmp_path: Path) -> None:
    # A model download (or a requirements install) of more than an hour: its folder's own time
    # is as old as the download, the file it writes changes. Was: collected under it.
    downloading = made(tmp_path / "cache" / "models" / "tmpdownload")
    aged(downloading)
    (downloading / "data").write_bytes(b"x" * 200)  # written now
    abandoned = aged(made(tmp_path / "envs" / ".installing-abc"))
    prune(tmp_path, set())
    assert downloading.exists() and not abandoned.exists()


def test_a_moved_home_keeps_the_records_of_its_cached_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: after `mv ~/.inferd /data/inferd` a record named the old folder: the collection
    # removed it, and a model whose origin was down had no cached copy to serve ("cannot download").
    first = tmp_path / "home"
    copy = made(first / "cache" / "models" / ("a" * 32))
    uri = "http://origin/m.onnx"
    record = first / "cache" / "models" / "last" / record_name(uri)
    record.parent.mkdir()
    record.write_text(json.dumps({"uri": uri, "path": str(copy / "data"), "digest": "d", "fetched": 1.0}))
    moved = tmp_path / "moved"
    first.rename(moved)
    prune(moved, {moved / "cache" / "models" / ("a" * 32)})
    assert (moved / "cache" / "models" / "last" / record_name(uri)).exists()
    monkeypatch.setenv("INFERD_HOME", str(moved))
    assert cached_copy(uri) == (moved / "cache" / "models" / ("a" * 32) / "data", "d", 1.0)


def test_a_scratch_folder_of_a_running_process_is_kept_after_the_clock_jumps_forward(tmp_path: Path) -> None:
    # A requirements install writes nothing in its folder until pip moves the packages in at the
    # end. NTP stepped a VM's clock two hours forward while it ran: the folder looked two hours
    # old and the next collection took it from under the install. The mark names the process
    # that made the folder; while it runs, the folder is its own, whatever the clock says.
    installing = aged(scratch_folder(tmp_path / "envs", ".installing-"))  # made by this process
    ended = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pathlib import Path; from inferd.storage import scratch_folder; "
            f"print(scratch_folder(Path({str(tmp_path / 'envs')!r}), '.installing-'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    crashed = aged(Path(ended.stdout.strip()))  # its process ended (a crash): collected
    older = aged(made(tmp_path / "envs" / ".installing-old"))  # an older inferd's mark: by age
    prune(tmp_path, set())
    assert installing.exists()
    assert not crashed.exists() and not older.exists()
