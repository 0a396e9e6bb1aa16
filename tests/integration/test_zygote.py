"""Replica zygotes: replicas, the first one too, are forked by a zygote that did the imports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Server, child_pids, example, make_project, replica_pids, wait_for, zygote_pids
from tests.integration.conftest import Inferd

Serve = Callable[..., Server]
SAMPLE = json.loads((example("iris-onnx") / "sample.json").read_text())


def parent_of(pid: int) -> int:
    """The parent's pid (0 once ``pid`` is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[1])


def imported_onnxruntime(pid: int) -> bool:
    try:
        return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def replace_until_forked(server: Server, zygote_of: set[int] | None = None) -> int:
    """Kill the replica until its replacement is a zygote's child; that replica's pid."""

    def forked() -> int | None:
        replicas = replica_pids(server.process.pid)
        if len(replicas) != 1:
            return None
        (replica,) = replicas
        zygotes = zygote_pids(server.process.pid)
        if parent_of(replica) in zygotes and server.post("/iris/classifier", SAMPLE).status_code == 200:
            return replica
        ok = server.post("/iris/classifier", SAMPLE).status_code == 200
        if ok and any(imported_onnxruntime(pid) for pid in zygotes):
            with contextlib.suppress(ProcessLookupError):
                os.kill(replica, signal.SIGKILL)  # its replacement may come from the zygote
        return None

    return int(wait_for(forked, 120, "a replica forked by the zygote"))


def test_replicas_come_from_the_zygote_and_a_dead_zygote_stops_nothing(serve: Serve) -> None:
    server = serve(example("iris-onnx"))
    # the first replica too: onnxruntime is imported once, by the zygote
    (replica,) = replica_pids(server.process.pid)
    (zygote,) = zygote_pids(server.process.pid)
    assert parent_of(replica) == zygote
    assert child_pids(zygote) == {replica}
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
    # its output reaches the server's, as a spawned replica's does
    wait_for(lambda: f"replica is ready (pid {replica})" in server.log(), 30, "the replica's log line")
    # forked replicas hold none of the gateway's sockets: only their own socketpair end
    sockets = [os.readlink(f"/proc/{replica}/fd/{fd}") for fd in os.listdir(f"/proc/{replica}/fd")]
    assert sum(target.startswith("socket:") for target in sockets) == 1

    os.kill(zygote, signal.SIGKILL)
    wait_for(lambda: zygote not in zygote_pids(server.process.pid), 30, "the zygote gone")
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"  # its replica serves on
    os.kill(replica, signal.SIGKILL)
    wait_for(lambda: server.post("/iris/classifier", SAMPLE).status_code == 200, 60, "a new replica")
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
    # a new zygote was started, and later replicas come from it again
    again = replace_until_forked(server)
    assert parent_of(again) != zygote and server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"


def test_a_zygote_that_dies_while_it_imports_holds_no_replica_back(serve: Serve) -> None:
    server = serve(example("iris-onnx"), ready=False)
    # killed as soon as it is seen (still importing, or not: either way the API comes up)
    (zygote,) = wait_for(lambda: zygote_pids(server.process.pid), 60, "the first zygote")
    os.kill(zygote, signal.SIGKILL)
    server.wait_ready()
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"


def test_zygotes_can_be_turned_off(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_ZYGOTE", "0")
    server = serve(example("iris-onnx"))
    (replica,) = replica_pids(server.process.pid)
    assert parent_of(replica) == server.process.pid and not zygote_pids(server.process.pid)
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"


def test_a_forked_replica_runs_the_exit_handlers_its_handler_registered(serve: Serve, tmp_path: Path) -> None:
    exits = tmp_path / "exits"
    exits.mkdir()
    iris = example("iris-onnx")
    handler = (iris / "handlers" / "iris.py").read_text() + (
        "\nimport atexit, os, pathlib\n"
        f"atexit.register(lambda: (pathlib.Path({str(exits)!r}) / str(os.getpid())).write_text('flushed'))\n"
    )
    project = make_project(
        tmp_path / "p",
        (iris / "cortex.yaml").read_text(),
        {"handlers/iris.py": handler},
        {"models/iris.onnx": iris / "models" / "iris.onnx"},
    )
    server = serve(project)
    replica = replace_until_forked(server)
    server.stop()
    marker = exits / str(replica)  # what a user's buffered writer flushes at exit, say
    wait_for(lambda: marker.exists() and marker.read_text() == "flushed", 30, "the replica's exit handler")


def test_a_runtime_s_zygote_stops_once_no_api_runs_on_it(inferd: Inferd) -> None:
    # after `inferd delete`, nothing of the deleted API stays: a zygote holds its runtime's
    # imports (TensorFlow's about 600 MiB) for later replicas, and none will come
    inferd.run("deploy", str(example("iris-onnx")))
    operator = inferd.operator_pid()
    assert operator is not None
    wait_for(lambda: zygote_pids(operator), 120, "the onnx zygote")
    inferd.run("delete", "iris")
    wait_for(lambda: not zygote_pids(operator), 60, "the zygote gone with the last onnx API")
    assert "no API runs on onnx any more: its zygote stops" in (inferd.home / "operator.log").read_text()
    inferd.run("deploy", str(example("iris-onnx")))  # and the next deploy starts one again
    assert inferd.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
    wait_for(lambda: zygote_pids(operator), 120, "a new onnx zygote")
