"""Replica zygotes: replicas, the first one too, are forked by a zygote that did the imports."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    INFERD,
    Server,
    child_pids,
    example,
    make_project,
    process_alive,
    replica_pids,
    served_url,
    wait_for,
    zygote_pids,
)
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


def imported(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def replace_until_forked(
    server: Server, route: str = "/iris/classifier", sample: object = SAMPLE, library: str = ""
) -> int:
    """Kill the replica until its replacement is a zygote's child; that replica's pid.

    ``library``: what the zygote maps once its imports are done (default: onnxruntime's for the
    iris example, NumPy's otherwise)."""

    def forked() -> int | None:
        replicas = replica_pids(server.process.pid)
        if len(replicas) != 1:
            return None
        (replica,) = replicas
        zygotes = zygote_pids(server.process.pid)
        if parent_of(replica) in zygotes and server.post(route, sample).status_code == 200:
            return replica
        ok = server.post(route, sample).status_code == 200
        runtime = library or ("onnxruntime" if route == "/iris/classifier" else "_multiarray_umath")
        if ok and any(imported(pid, runtime) for pid in zygotes):
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
    # named as a replica in `ps`, not by the zygote's command line it was forked with
    title = Path(f"/proc/{replica}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert title.startswith("inferd replica classifier-")
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


# A handler whose helper process exits without reading its input: writing to it is a broken pipe,
# which Python raises as BrokenPipeError (it ignores SIGPIPE), and which the handler catches.
BROKEN_PIPE = """import csv, os, subprocess, time


def predict(sample, metadata):
    if sample.get("probe"):
        return {"pid": os.getpid(), "csv": csv.__file__}
    if sample.get("sleep"):
        open(sample["busy"], "w").close()
        time.sleep(sample["sleep"])
    helper = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    helper.wait()
    try:
        os.write(helper.stdin.fileno(), b"x")
    except BrokenPipeError:
        return {"pid": os.getpid(), "pipe": "BrokenPipeError"}
    finally:
        helper.stdin.close()
    return {"pid": os.getpid(), "pipe": "written"}
"""
CONFIG = "- kind: deployment\n  name: forks\n- kind: api\n  name: pipes\n  predictor:\n    path: p.py\n"


def test_a_forked_replica_is_a_process_as_a_spawned_one_is(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: the zygote ran its imports with the folder `inferd serve` was started in first on
    # sys.path (`python -m` puts it there): a stray csv.py there, not in the project, was the
    # `csv` of every forked replica (a spawned one has the project's folder there instead).
    shell = tmp_path / "shell"
    shell.mkdir()
    (shell / "csv.py").write_text("STRAY = True\n")
    monkeypatch.chdir(shell)
    server = serve(make_project(tmp_path / "pipes", CONFIG, {"p.py": BROKEN_PIPE}))
    replica = replace_until_forked(server, "/forks/pipes", {"probe": True})
    assert server.post("/forks/pipes", {"probe": True}).json()["csv"] == csv.__file__
    # Was: the zygote's child reset SIGPIPE to its default, so a forked replica whose handler wrote
    # to a closed pipe or socket (a helper that exited, a peer that hung up) was killed by the
    # signal, its request failed and the replica was replaced, where a spawned one got the error.
    for _ in range(2):
        answer = server.post("/forks/pipes", {})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"pid": replica, "pipe": "BrokenPipeError"}
    # it holds no descriptor of the zygote's (its event selector was one)
    held = [os.readlink(f"/proc/{replica}/fd/{fd}") for fd in os.listdir(f"/proc/{replica}/fd")]
    assert not [target for target in held if target.startswith("anon_inode:")], held

    # Was: a spawned replica ends with the process that started it (the kernel sends it SIGTERM),
    # but a forked one's parent is the zygote: with the server killed (kill -9, the OOM killer),
    # the zygote went, and a replica busy with a request ran on, orphaned, until it finished (for
    # ever for a handler that never returns), holding its memory beside the restarted operator's.
    busy = tmp_path / "busy-now"
    sample = {"sleep": 600, "busy": str(busy)}

    def post() -> None:
        with contextlib.suppress(requests.RequestException):  # the server is killed while it waits
            server.post("/forks/pipes", sample)

    threading.Thread(target=post, daemon=True).start()
    try:
        wait_for(busy.exists, 30, "the replica busy with the request")
        # the terminal `inferd serve` ran in hangs up: the zygote, in its process group, got that
        # signal too, and went before the engine, leaving its replicas to run on
        (zygote,) = zygote_pids(server.process.pid)
        os.kill(zygote, signal.SIGHUP)
        server.process.kill()
        try:
            wait_for(lambda: not process_alive(replica), 30, "the busy replica to end with its server")
        except AssertionError:
            status = Path(f"/proc/{replica}/status").read_text()
            raise AssertionError(f"{status}\nzygote alive: {process_alive(zygote)}\n{server.log()}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(replica, signal.SIGKILL)


def test_a_replica_forked_too_late_is_left_out(serve: Serve, tmp_path: Path) -> None:
    # Was: when the zygote did not answer in time (a stopped or starved process), the replica was
    # spawned on the socket the zygote had been given too; once the zygote went on, its late
    # child read from that socket beside the spawned one: one took the spec, the other a request
    # frame, whose client never got an answer.
    pid_handler = "import os\n\n\ndef predict(sample, metadata):\n    return os.getpid()\n"
    project = make_project(tmp_path / "late", CONFIG, {"p.py": pid_handler})
    server = serve(project, "--reload")
    first = server.post("/forks/pipes", {}).json()
    (zygote,) = zygote_pids(server.process.pid)
    assert parent_of(first) == zygote
    wait_for(lambda: "watching" in server.log(), 30, "the watcher")
    os.kill(zygote, signal.SIGSTOP)
    try:  # an edit: the new version's replica is asked of the stopped zygote
        (project / "p.py").write_text(pid_handler + "# edited\n")
        wait_for(lambda: "zygote did not answer" in server.log(), 60, "the engine to give up on the zygote")
    finally:
        os.kill(zygote, signal.SIGCONT)  # it goes on: its late child finds no gateway
    wait_for(lambda: "reloaded pipes in" in server.log(), 60, "the new version live")
    answers = {server.post("/forks/pipes", {}).json() for _ in range(5)}
    assert len(answers) == 1
    (spawned,) = answers
    assert parent_of(spawned) == server.process.pid


def zygote_runtimes(operator: int) -> set[str]:
    """The runtime of each zygote the operator runs (its command line's last word)."""
    runtimes = set()
    for pid in zygote_pids(operator):
        with contextlib.suppress(OSError, IndexError):
            runtimes.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()[-1].decode())
    return runtimes


def test_a_runtime_s_zygote_stops_once_an_update_moves_its_last_api_off_it(
    inferd: Inferd, tmp_path: Path
) -> None:
    # Was: only `inferd delete` stopped a zygote; an API updated from one runtime to another (a
    # predictor that became an ONNX model) left the old runtime's zygote running for good.
    iris = example("iris-onnx")
    head = "- kind: deployment\n  name: moving\n- kind: api\n  name: api\n"
    project = make_project(
        tmp_path / "moving",
        head + "  predictor:\n    path: p.py\n",
        {"p.py": "def predict(sample, metadata):\n    return 'predictor'\n"},
        {"models/iris.onnx": iris / "models" / "iris.onnx"},
    )
    inferd.run("deploy", str(project))
    operator = inferd.operator_pid()
    assert operator is not None
    wait_for(lambda: zygote_runtimes(operator) == {"predictor"}, 120, "the predictor zygote")
    (project / "cortex.yaml").write_text(head + "  onnx:\n    model: models/iris.onnx\n")
    inferd.run("deploy", str(project))
    assert inferd.post("/moving/api", [[5.1, 3.5, 1.4, 0.2]]).status_code == 200
    wait_for(lambda: zygote_runtimes(operator) == {"onnx"}, 120, "the onnx zygote alone")


# A handler that hands work to a multiprocessing child, which Python waits for at exit.
HANDS_OFF = """
import multiprocessing, os, pathlib, time


def _finish(path):
    time.sleep(0.5)
    pathlib.Path(path).write_text("finished")


def post_inference(prediction, signature, metadata):
    if sorted(metadata) == ["marks"] and not hasattr(post_inference, "started"):
        post_inference.started = True
        target = str(pathlib.Path(metadata["marks"]) / str(os.getpid()))
        multiprocessing.get_context("fork").Process(target=_finish, args=(target,)).start()
    return labels[int(prediction["class_ids"][0])]
"""


def test_a_forked_tensorflow_replica_waits_for_its_multiprocessing_children(
    serve: Serve, tmp_path: Path
) -> None:
    # Was: the TensorFlow zygote imports multiprocessing (TensorFlow does), whose exit handler
    # joins the children a process started; the child cleared the zygote's exit handlers, so a
    # forked replica left at once and its children were killed with it, where a spawned replica
    # (which imports TensorFlow itself) waited for them.
    iris = example("iris-tensorflow")
    marks = tmp_path / "marks"
    marks.mkdir()
    config = (
        (iris / "cortex.yaml")
        .read_text()
        .replace("handlers/iris.py\n", f"handlers/iris.py\n    metadata:\n      marks: {marks}\n")
    )
    handler = (iris / "handlers" / "iris.py").read_text() + HANDS_OFF
    project = make_project(
        tmp_path / "tf", config, {"handlers/iris.py": handler}, {"models": iris / "models"}
    )
    server = serve(project)
    sample = json.loads((iris / "sample.json").read_text())
    replica = replace_until_forked(server, "/iris-tf/tensorflow", sample, "libtensorflow")
    assert server.post("/iris-tf/tensorflow", sample).json() == "setosa"
    server.stop()
    wait_for(lambda: (marks / str(replica)).exists(), 30, "the replica's child to finish its work")


def test_replicas_are_replaced_under_a_runner_that_starts_jobs_with_signals_blocked(tmp_path: Path) -> None:
    # Was: a blocked signal stays blocked across fork and exec, and a job runner that started
    # `inferd serve` with SIGCHLD, SIGTERM, SIGINT and SIGHUP blocked left them blocked in every
    # process of it: the zygote never heard its replicas die, a killed replica stayed a zombie and
    # its API answered 504 for good ("updating", 0 available), and SIGTERM stopped nothing.
    blocked = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(INFERD), "serve", str(example("iris-onnx")), "--port", "0"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, blocked),
        )
    try:
        url = served_url(log, process)
        (replica,) = wait_for(lambda: replica_pids(process.pid) or None, 30, "the replica")
        os.kill(replica, signal.SIGKILL)

        def replaced() -> bool:
            if replica_pids(process.pid) - {replica} == set():
                return False
            return requests.post(f"{url}/iris/classifier", json=SAMPLE, timeout=10).status_code == 200

        wait_for(replaced, 60, "a new replica serving")
        process.terminate()  # drained and stopped, as from an unblocked shell
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
