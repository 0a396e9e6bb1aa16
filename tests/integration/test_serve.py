"""`inferd serve` end to end: real replica processes, real HTTP over loopback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    INFERD,
    ROOT,
    Server,
    example,
    make_project,
    process_alive,
    replica_pids,
    served_url,
    wait_for,
    zygote_pids,
)
from tests.integration.conftest import free_port
from tests.integration.test_operator import HeldModel

Serve = Callable[..., Server]
SAMPLE = json.loads((example("iris-onnx") / "sample.json").read_text())
VIRGINICA = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1}


def children(pid: int) -> set[int]:
    return replica_pids(pid)


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server of the iris example, shared by the tests that only send it requests."""
    server = Server(example("iris-onnx"), tmp_path_factory.mktemp("iris") / "serve.log").wait_ready()
    yield server
    server.stop()


def test_onnx_example_end_to_end(iris: Server) -> None:
    server = iris
    response = server.post("/iris/classifier", SAMPLE)
    assert response.status_code == 200
    assert response.json() == "iris-setosa"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert server.post("/iris/classifier", VIRGINICA).json() == "iris-virginica"
    info = requests.get(f"{server.url}/iris/classifier", timeout=5).json()
    assert info["status"] == "live"
    assert info["signature"]["inputs"] == [
        {"name": "input", "dtype": "float32", "shape": [-1, 4], "type": "tensor(float)"}
    ]
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"ok": True}


@pytest.mark.tensorflow
def test_tensorflow_example_end_to_end(serve: Serve) -> None:
    server = serve(example("iris-tensorflow"))
    assert server.post("/iris-tf/tensorflow", SAMPLE).json() == "setosa"
    assert server.post("/iris-tf/tensorflow", VIRGINICA).json() == "virginica"
    info = requests.get(f"{server.url}/iris-tf/tensorflow", timeout=5).json()
    assert info["signature"]["signature_key"] == "predict"
    assert sorted(i["name"] for i in info["signature"]["inputs"]) == [
        "petal_length",
        "petal_width",
        "sepal_length",
        "sepal_width",
    ]


def test_predictor_example_end_to_end(serve: Serve) -> None:
    server = serve(example("iris-predictor"))
    assert server.post("/iris-py/predictor", VIRGINICA).json() == "virginica"


@pytest.fixture(scope="module")
def raw_project(
    tmp_path_factory: pytest.TempPathFactory, iris_onnx_model: Path, two_input_model: Path
) -> Path:
    """Two APIs without handlers (raw tensors in and out) and one with a stateful handler."""
    handler = (
        "import logging.config, os, sys, time\n"
        "logging.config.dictConfig({'version': 1})  # disables the loggers that exist: inferd's too\n"
        "calls = 0\n"
        "def pre_inference(sample, signature, metadata):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if sample.get('fail'):\n"
        "        raise RuntimeError('asked to fail')\n"
        "    if sample.get('exit'):\n"
        "        sys.exit(sample['exit'])\n"
        "    if sample.get('interrupt'):\n"
        "        raise KeyboardInterrupt\n"
        "    while sample.get('gate') and not os.path.exists(sample['gate']):\n"  # held until then
        "        time.sleep(0.01)\n"
        "    time.sleep(sample.get('sleep', 0))\n"
        "    return [1, 2, 3, 4]\n"
        "def post_inference(prediction, signature, metadata):\n"
        "    return {'calls': calls, 'pid': os.getpid()}\n"
    )
    return make_project(
        tmp_path_factory.mktemp("raw") / "project",
        "- kind: deployment\n  name: test\n"
        "- kind: api\n  name: raw\n  onnx:\n    model: iris.onnx\n"
        "- kind: api\n  name: add\n  endpoint: /math/add\n  onnx:\n    model: add.onnx\n"
        "- kind: api\n  name: stateful\n  onnx:\n    model: iris.onnx\n    request_handler: h.py\n"
        "  compute:\n    init_replicas: 2\n    max_replicas: 2\n",
        {"h.py": handler},
        {"iris.onnx": iris_onnx_model, "add.onnx": two_input_model},
    )


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory, raw_project: Path) -> Iterator[Server]:
    """One server of ``raw_project``, shared by the tests that only send it requests."""
    server = Server(raw_project, tmp_path_factory.mktemp("raw-serve") / "serve.log").wait_ready()
    yield server
    server.stop()


def test_raw_tensors_batches_several_inputs_and_errors(raw: Server) -> None:
    server = raw
    rows = [[5.2, 3.6, 1.4, 0.3], [6.9, 3.1, 5.4, 2.1], [5.9, 3.0, 4.2, 1.5]]
    labels, probabilities = server.post("/test/raw", rows).json()
    assert labels == [0, 2, 1]
    assert len(probabilities) == 3 and set(probabilities[0]) == {"0", "1", "2"}
    assert server.post("/test/raw", rows[1]).json()[0] == [2]  # missing batch dim added

    added = server.post("/math/add", {"a": [[1, 2], [3, 4]], "b": [10, 20]})  # b: batch dim added
    assert added.json() == [[[11.0, 22.0], [13.0, 24.0]]]  # and the model broadcasts it
    assert server.post("/math/add", {"a": [[1, 2], [3, 4]], "b": [[10, 20], [30, 40]]}).json() == [
        [[11.0, 22.0], [33.0, 44.0]]
    ]

    wrong_shape = server.post("/test/raw", [[1, 2, 3]])
    assert wrong_shape.status_code == 400
    assert "input 'input': expected shape [-1, 4]" in wrong_shape.json()["error"]
    wrong_type = server.post("/test/raw", [["a", "b", "c", "d"]])
    assert wrong_type.status_code == 400
    assert "input 'input': expected float32" in wrong_type.json()["error"]
    missing = server.post("/math/add", {"a": [1, 2]})
    assert missing.status_code == 400 and "missing input 'b'" in missing.json()["error"]
    malformed = server.post("/test/raw", data=b"{not json")
    assert malformed.status_code == 400 and malformed.json()["error"].startswith("malformed JSON")
    unknown = server.post("/test/nope", rows)
    assert unknown.status_code == 404 and "/test/raw" in unknown.json()["error"]
    assert server.post("/test/raw", rows).json()[0] == [0, 2, 1]  # still serving


def test_handler_errors_globals_and_replicas(raw: Server, tmp_path: Path) -> None:
    server = raw
    failed = server.post("/test/stateful", {"fail": True})
    assert failed.status_code == 500
    assert failed.json()["error"] == "pre_inference in h.py failed: RuntimeError: asked to fail"
    assert "Traceback" in wait_for(lambda: "RuntimeError: asked to fail" in server.log() and server.log())

    with requests.Session() as session:  # keep-alive: one connection, many requests
        answers = [session.post(f"{server.url}/test/stateful", json={}, timeout=10).json() for _ in range(6)]
    by_pid: dict[int, list[int]] = {}
    for answer in answers:
        by_pid.setdefault(answer["pid"], []).append(answer["calls"])
    for calls in by_pid.values():  # globals persist per replica: counts only go up
        assert calls == sorted(calls)

    # both replicas take work when requests overlap: one is held (until the gate file exists),
    # and the next goes to the other replica
    status = f"{server.url}/test/stateful"
    wait_for(lambda: requests.get(status, timeout=5).json()["replicas"]["ready"] == 2, 60, "two replicas")
    gate = tmp_path / "go"
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(server.post, "/test/stateful", {"gate": str(gate)})
        wait_for(lambda: requests.get(status, timeout=5).json()["replicas"]["busy"] == 1, 30, "one held")
        other = server.post("/test/stateful", {}).json()
        gate.touch()
        assert held.result().json()["pid"] != other["pid"]


def test_sys_exit_or_keyboard_interrupt_in_a_handler_is_its_500_not_the_replicas_end(raw: Server) -> None:
    # Both ended the replica: a 503 telling the client to retry the request that ended it, and a
    # new replica to load.
    exited = raw.post("/test/stateful", {"exit": "no more"})
    assert (exited.status_code, exited.json()) == (
        500,
        {"error": "pre_inference in h.py failed: SystemExit: no more"},
    )
    interrupted = raw.post("/test/stateful", {"interrupt": True})
    assert interrupted.status_code == 500
    assert interrupted.json() == {"error": "pre_inference in h.py failed: KeyboardInterrupt"}
    assert raw.post("/test/stateful", {}).status_code == 200
    # The traceback is in the log although the handler's dictConfig disabled every logger that
    # existed when it was imported (inferd's own among them: the log said nothing of failures).
    # Waited for by this request's own lines: the server's log also holds the earlier tests'
    # failures (a RuntimeError's), and a replica's lines reach it after its answer may have.
    wait_for(
        lambda: (
            "sys.exit(sample['exit'])" in (text := raw.log())
            and "ERROR prediction failed: pre_inference in h.py failed: SystemExit: no more" in text
        ),
        30,
        "the SystemExit's traceback in the log",
    )


def test_requests_queue_while_the_replica_is_busy(raw: Server) -> None:
    server = raw
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: server.post("/test/stateful", {"sleep": 0.1}), range(8)))
    assert [r.status_code for r in responses] == [200] * 8


def test_debug_logs_every_stage(iris: Server) -> None:
    server = iris
    assert (
        requests.post(f"{server.url}/iris/classifier?debug=true", json=SAMPLE, timeout=10).status_code == 200
    )
    log = wait_for(lambda: "post_inference: 'iris-setosa'" in server.log() and server.log())
    for stage in ("sample: {'sepal_length': 5.2", "pre_inference: {'input': [5.2", "inference: [array("):
        assert stage in log


def test_body_limit_pipelining_and_expect_continue(iris: Server) -> None:
    server = iris
    big = server.post("/iris/classifier", data=b"[" + b"1," * (6 * 1024 * 1024) + b"1]")
    assert big.status_code == 413
    # it named no setting: an image API's 20 MB of JSON met it first
    assert big.json() == {"error": "the request body is larger than 10485760 bytes, the API's max_body_size"}
    port = int(server.url.rsplit(":", 1)[1])
    body = json.dumps(SAMPLE).encode()
    request = (
        f"POST /iris/classifier HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request * 3)  # three pipelined requests, answered in order
        received = b""
        while received.count(b'"iris-setosa"') < 3:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert received.count(b"HTTP/1.1 200 OK") == 3
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"POST /iris/classifier HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert b'"iris-setosa"' in wait_for(lambda: sock.recv(65536))
    garbage = socket.create_connection(("127.0.0.1", port), timeout=10)
    garbage.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage.recv(1024).startswith(b"HTTP/1.1 400")
    garbage.close()
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"


def test_no_metrics_leaves_the_access_log_on(serve: Serve) -> None:
    """`--no-metrics` stops counting requests for /metrics, as its help says, and nothing else:
    with `--access-log` too, no access line was printed (the access log was recorded after the
    metrics, and skipped with them)."""
    server = serve(example("iris-onnx"), "--access-log", "--no-metrics")
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"

    def access_line() -> dict[str, object] | None:
        lines = [line for line in server.log().splitlines() if line.startswith('{"time"')]
        return json.loads(lines[0]) if lines else None

    line = wait_for(access_line, 30, "the request's access line")
    assert (line["api"], line["status"]) == ("classifier", 200)
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text.splitlines()
    counted = [line for line in metrics if line.startswith("inferd_requests_total{")]
    assert all(line.endswith(" 0.0") for line in counted), counted


def test_killed_replica_is_replaced(serve: Serve) -> None:
    server = serve(example("iris-onnx"))
    (replica,) = children(server.process.pid)
    os.kill(replica, signal.SIGKILL)
    wait_for(lambda: children(server.process.pid) - {replica}, 60, "a new replica")
    wait_for(lambda: server.post("/iris/classifier", SAMPLE).status_code == 200, 60, "serving again")
    assert server.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
    # The console says so, as `inferd logs` does under the operator (a handler's os._exit or a
    # crash in C showed only a new "replica is ready" line).
    said = "inferd: api 'iris/classifier': replica classifier-1 was killed by signal 9; starting another in"
    wait_for(lambda: said in server.log(), 30, "the crash on the console")


def oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def test_the_oom_killer_takes_a_replica_before_the_gateway(iris: Server) -> None:
    # Was: every process had the same oom_score_adj, so with no compute.mem_limit a machine out
    # of memory could lose the gateway (holding large answers for slow clients) and every API
    # with it; now the kernel ranks each replica (and what its handler starts) first.
    # Ranked from the gateway's score, whatever this machine starts it at (0 here; a Kubernetes
    # pod's processes, a CI job's among them, start at 2-1000: at 600 the replica's 1000 was
    # taken for a failure, the test asking for a gateway below 500).
    (replica,) = children(iris.process.pid)
    gateway = oom_score_adj(iris.process.pid)
    assert oom_score_adj(replica) == min(1000, max(500, gateway + 500))
    assert oom_score_adj(replica) > gateway or gateway == 1000  # nothing ranks above 1000


def test_a_replica_ranks_above_a_gateway_whose_oom_score_adj_is_already_high(tmp_path: Path) -> None:
    # Was: a replica raised its score to 500 only when lower, so under a gateway already at 500
    # or more (a Kubernetes pod's processes start at 2-999 by its memory request: the pods
    # `inferd export` writes) it kept the gateway's, and the OOM killer had no preference.
    log_path = tmp_path / "serve.log"
    # raising needs no privilege; lowering does (a pod's processes may start above 700)
    high = max(700, oom_score_adj(os.getpid()))
    raised = f'echo {high} > /proc/self/oom_score_adj && exec "$@"'
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", raised, "sh", str(INFERD), "serve", str(example("iris-onnx")), "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, INFERD_HOME=str(tmp_path / "home")),
        )
    try:
        wait_for(lambda: "is live" in log_path.read_text(errors="replace"), 120, "the api to be live")
        (replica,) = children(process.pid)
        assert oom_score_adj(process.pid) == high
        assert oom_score_adj(replica) == 1000, log_path.read_text(errors="replace")
    finally:
        process.terminate()
        process.wait(60)


GROWS = """
def predict(sample, metadata):
    held = []
    while True:
        held.append(bytearray(b"\\x01" * (32 << 20)))
"""


def test_a_crash_loop_of_replicas_over_their_mem_limit_says_so(serve: Serve, tmp_path: Path) -> None:
    # Was: "its replicas keep stopping once started (3 in a row, the last: replica grows-4 was
    # killed by signal 9)": inferd's own kill for compute.mem_limit, told as a crash of unknown cause.
    project = make_project(
        tmp_path / "grows",
        "- kind: deployment\n  name: mem\n- kind: api\n  name: grows\n  predictor:\n    path: p.py\n"
        "  compute:\n    mem_limit: 200Mi\n",
        {"p.py": GROWS},
    )
    server = serve(project)

    def refused() -> str | None:
        answer = server.post("/mem/grows", {})
        return str(answer.json()["error"]) if answer.status_code == 503 else None

    error = wait_for(refused, 120, "the crash loop's 503")
    assert "used more than compute.mem_limit (200Mi) and was stopped" in error, error
    assert "signal" not in error


def test_broken_handler_fails_alone(serve: Serve, tmp_path: Path, iris_onnx_model: Path) -> None:
    root = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: d\n"
        "- kind: api\n  name: good\n  onnx:\n    model: iris.onnx\n"
        "- kind: api\n  name: broken\n  onnx:\n    model: iris.onnx\n    request_handler: bad.py\n"
        "- kind: api\n  name: slow\n  onnx:\n    model: iris.onnx\n    request_handler: slow.py\n"
        "  timeout: 1\n",
        {"bad.py": "import module_that_does_not_exist\n", "slow.py": "import time\ntime.sleep(3600)\n"},
        {"iris.onnx": iris_onnx_model},
    )
    server = serve(root, ready=False)
    wait_for(lambda: server.post("/d/good", [[1, 2, 3, 4]]).status_code == 200, 120, "the good api")
    # (a list around it: a 503 Response is falsy)
    [response] = wait_for(
        lambda: (r := server.post("/d/broken", {})).status_code == 503 and [r], 120, "error"
    )
    assert (
        "api 'broken' is not ready: bad.py: importing it failed: ModuleNotFoundError"
        in response.json()["error"]
    )
    assert response.headers["Retry-After"] == "1"
    health = requests.get(f"{server.url}/healthz", timeout=5)
    assert health.status_code == 503 and health.json()["not_ready"] == ["broken", "slow"]
    status = requests.get(f"{server.url}/d/broken", timeout=5).json()
    assert status["status"] == "error" and "ModuleNotFoundError" in status["error"]
    # The protocols say so too (README, "Protocols"): V2's ready route 503, TF Serving's status
    # END for the API that failed to load (its predict 503) and LOADING for the one still loading
    # (whose requests wait for its first replica, as a scale-from-zero API's do).
    rows = {"instances": [[1, 2, 3, 4]]}
    for name, state in (("broken", "END"), ("slow", "LOADING")):
        assert requests.get(f"{server.url}/v2/models/{name}/ready", timeout=5).status_code == 503
        tf_status = requests.get(f"{server.url}/v1/models/{name}", timeout=5).json()
        assert tf_status["model_version_status"][0]["state"] == state, tf_status
    predicted = requests.post(f"{server.url}/v1/models/broken:predict", json=rows, timeout=5)
    assert predicted.status_code == 503 and predicted.headers["Retry-After"] == "1"
    waited = requests.post(f"{server.url}/v1/models/slow:predict", json=rows, timeout=30)
    assert waited.status_code == 504, waited.text  # it waited its timeout (1 s), not a 503
    # and says why: it said only "the request did not finish within the api's timeout (1s)", as
    # if the model had run slowly, of a request no replica ever took
    assert waited.json()["error"] == (
        "the request did not finish within the api's timeout (1s): no replica of api 'slow' became "
        "ready in that time (one is still starting: the api's log says how it goes)"
    )
    assert server.post("/d/good", [[1, 2, 3, 4]]).status_code == 200
    # Retried with back-off: the traceback is printed once, each retry after it is one line.
    again = "importing it failed: ModuleNotFoundError: No module named 'module_that_does_not_exist' (again,"
    log = wait_for(lambda: (text := server.log()).count(again) >= 2 and text, 120, "two retries")
    assert log.count("Traceback (most recent call last)") == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_drains_and_leaves_no_process(
    serve: Serve, raw_project: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    # SIGHUP too, the terminal's hang-up (an ssh session dropped): it killed the server outright,
    # the request it was running reset.
    with as_a_terminal_starts_it():
        server = serve(raw_project)
    replicas = children(server.process.pid)
    zygotes = zygote_pids(server.process.pid)
    assert len(replicas) == 4
    gate = tmp_path / "go"
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.post, "/test/stateful", {"gate": str(gate)})  # held until the gate
        wait_for(
            lambda: requests.get(f"{server.url}/test/stateful", timeout=5).json()["replicas"]["busy"] == 1
        )
        server.process.send_signal(signum)
        wait_for(lambda: not server.healthy(), 30, "/healthz to say it is shutting down")
        gate.touch()
        assert slow.result().status_code == 200  # accepted before the signal: it finishes
    assert server.process.wait(60) == 0
    assert not [pid for pid in replicas | zygotes if process_alive(pid)]


@contextlib.contextmanager
def as_a_terminal_starts_it() -> Iterator[None]:
    """Servers started here get SIGHUP at its default, as from a terminal, even where the tests
    run under ``nohup`` (a handler here is the default again after the child's exec; an ignored
    signal would stay ignored, and the server then keeps it so)."""
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_under_nohup_a_hang_up_is_ignored_as_nohup_asks(tmp_path: Path) -> None:
    # Was: `nohup inferd serve DIR &`, then the terminal closed: the SIGHUP that nohup ignores
    # drained and stopped the server, as the SIGHUP drain replaced the ignored signal.
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["nohup", str(INFERD), "serve", str(example("iris-onnx")), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        url = served_url(log, process)
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
        )
        hang_up = 1 << (signal.SIGHUP - 1)  # still ignored, as nohup set it, not caught
        assert (int(status["SigIgn"], 16) & hang_up, int(status["SigCgt"], 16) & hang_up) == (hang_up, 0)
        process.send_signal(signal.SIGHUP)
        assert requests.post(f"{url}/iris/classifier", json=SAMPLE, timeout=30).json() == "iris-setosa"
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        assert process.poll() is None
    finally:
        process.terminate()  # SIGTERM still drains
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0 and "inferd: stopped" in log.read_text(), log.read_text()


def test_a_port_in_use_is_one_sentence_that_says_what_to_do(tmp_path: Path) -> None:
    # 8888 is also Jupyter's default port: a newcomer meets this on the first `inferd serve`.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(INFERD), "serve", str(example("iris-onnx")), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, INFERD_HOME=str(tmp_path / "home")),
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another with --port\n"
    )


def test_a_project_file_that_cannot_be_read_is_named_not_taken_for_the_port(tmp_path: Path) -> None:
    # Was: "error: cannot listen on 127.0.0.1:PORT: Input/output error" (or "Permission
    # denied", for a file of another user): every OSError was taken for the listening socket's.
    project = Path(shutil.copytree(example("iris-onnx"), tmp_path / "iris"))
    (project / "unreadable").symlink_to("/proc/self/mem")  # a regular file no read succeeds on
    result = subprocess.run(
        [str(INFERD), "serve", str(project), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, INFERD_HOME=str(tmp_path / "home")),
    )
    assert result.returncode == 2, result.stderr
    assert "error: cannot read the project's file unreadable: " in result.stderr
    assert "listen" not in result.stderr and "Traceback" not in result.stderr


def test_stopping_does_not_wait_for_a_replica_still_loading(
    serve: Callable[..., Server], tmp_path: Path, iris_onnx_model: Path
) -> None:
    # Ctrl-C (or SIGTERM) while a replica imports its handler or loads its model (TensorFlow:
    # tens of seconds) stops it at once: it holds no request. Before, the server waited for it.
    marks = tmp_path / "marks"
    marks.mkdir()
    handler = (
        "import pathlib, time\n"
        f"pathlib.Path({str(marks)!r}, 'started').touch()\n"
        "time.sleep(8)  # less than the 10 s a stop waits for a replica that is leaving\n"
        f"pathlib.Path({str(marks)!r}, 'imported').touch()\n"
    )
    config = (
        "- kind: deployment\n  name: slow\n"
        "- kind: api\n  name: loading\n  onnx:\n    model: m.onnx\n    request_handler: h.py\n"
    )
    project = make_project(tmp_path / "p", config, {"h.py": handler}, {"m.onnx": iris_onnx_model})
    server = serve(project, ready=False)
    wait_for(lambda: (marks / "started").exists(), 120, "the replica importing its handler")
    (replica,) = replica_pids(server.process.pid)
    assert server.stop() == 0
    wait_for(lambda: not process_alive(replica), 30, "the loading replica gone")
    assert not (marks / "imported").exists()
    assert "inferd: stopped" in server.log()


def test_ctrl_c_while_the_model_downloads_stops_at_once(tmp_path: Path, iris_onnx_model: Path) -> None:
    """Ctrl-C during the download of a remote model (or a requirements install) stops
    `inferd serve` without waiting for it: it went on until the download ended (minutes for a
    large model), and a second Ctrl-C was ignored."""
    origin = HeldModel(iris_onnx_model)
    config = (
        f"- kind: deployment\n  name: far\n- kind: api\n  name: remote\n  onnx:\n    model: {origin.url}\n"
    )
    project = make_project(tmp_path / "p", config)
    env = dict(os.environ, INFERD_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    log = tmp_path / "serve.log"
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(INFERD), "serve", str(project), "--port", "0"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            assert origin.asked.wait(120)  # the download waits until the origin is released
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)  # the origin holds the download for 120 s
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        origin.close()
    assert process.returncode == 0, log.read_text()
    assert log.read_text().rstrip().endswith("inferd: stopped")


def run_demo(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """``make demo``'s script (the Makefile's demo target runs it after building the models)."""
    makefile = (ROOT / "Makefile").read_text()
    assert "demo: models\n\t$(BIN)/python scripts/demo.py" in makefile
    assert "-e '.[all,dev,cortex]'" in makefile  # README: the .venv of make test, with every runtime
    with (tmp_path / "demo.out").open("wb") as out, (tmp_path / "demo.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "demo.py")],
            stdout=out,
            stderr=err,
            env=dict(os.environ, INFERD_PORT=str(port), PYTHONUNBUFFERED="1"),
            start_new_session=True,  # Ctrl-C reaches the demo and its inferd serve, as from a terminal
            # and the demo hears SIGINT as from a terminal: CI's background job starts with it ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def test_make_demo_predicts_once_then_serves_until_ctrl_c(tmp_path: Path) -> None:
    """README, Quick start: the label with a curl line to try, serving until Ctrl-C."""
    port = free_port()
    demo = run_demo(tmp_path, port)
    try:
        wait_for(lambda: "Serving until Ctrl-C." in (tmp_path / "demo.out").read_text(), 120, "the demo")
        out = (tmp_path / "demo.out").read_text()
        assert 'prediction:  "iris-setosa"' in out
        curl = f"-d @examples/iris-onnx/sample.json http://127.0.0.1:{port}/iris/classifier"
        assert curl in out
        sample = (ROOT / "examples" / "iris-onnx" / "sample.json").read_bytes()
        answer = requests.post(f"http://127.0.0.1:{port}/iris/classifier", data=sample, timeout=30)
        assert answer.json() == "iris-setosa"
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_make_demo_stopped_on_its_own_stops_its_inferd_serve(tmp_path: Path, signum: signal.Signals) -> None:
    # `kill PID` of the demo (a supervisor, `timeout`) left its inferd serve running on the port,
    # its parent gone; `kill -INT PID` left the demo waiting for a server that never heard it.
    port = free_port()
    demo = run_demo(tmp_path, port)
    try:
        wait_for(lambda: "Serving until Ctrl-C." in (tmp_path / "demo.out").read_text(), 120, "the demo")
        children = Path(f"/proc/{demo.pid}/task/{demo.pid}/children").read_text().split()
        assert len(children) == 1, children  # its inferd serve
        serve = int(children[0])
        demo.send_signal(signum)  # the demo alone, not its process group
        demo.wait(60)
        wait_for(lambda: not process_alive(serve), 60, "the demo's inferd serve to stop")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the demo, or a serve it left behind
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()


class AnyServer(BaseHTTPRequestHandler):
    """Another web server on the demo's port: 200 to everything, as another inferd would."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_make_demo_refuses_a_port_another_server_answers_on(tmp_path: Path) -> None:
    # `inferd up` before `make demo` leaves the operator's gateway on 8888: the demo printed that
    # server's answer as its own, while its own inferd serve had exited (address in use).
    other = ThreadingHTTPServer(("127.0.0.1", 0), AnyServer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        demo = run_demo(tmp_path, other.server_address[1])
        assert demo.wait(120) != 0
    finally:
        other.shutdown()
        other.server_close()
    assert "prediction" not in (tmp_path / "demo.out").read_text()
    assert (
        "Address already in use; choose another port: INFERD_PORT=9000 make demo"
        in (tmp_path / "demo.err").read_text()
    )


def test_an_api_scaled_to_zero_after_a_crash_loop_starts_again_at_a_request(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    # The crash loop's 503 stayed the gateway's answer once the API scaled to zero: no request
    # was admitted, so none started a replica, and the API said `live` with every request
    # refused for ever ("the next starts in 7.8s"), the code fixed or not.
    healthy = tmp_path / "healthy"
    crashes = (
        "import os, threading\n"
        "def init(model_path, metadata):\n"
        f"    if not os.path.exists({str(healthy)!r}):\n"
        "        threading.Timer(0.2, os._exit, (3,)).start()\n"
        "def predict(sample, metadata):\n"
        "    return 'ok'\n"
    )
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: z\n- kind: api\n  name: flaky\n  predictor:\n    path: p.py\n"
        "  compute:\n    min_replicas: 0\n  autoscaling:\n    downscale_window: 1\n",
        {"p.py": crashes},
    )
    server = serve(project, ready=False)
    pid = server.process.pid

    def looping() -> bool:  # requests keep a replica wanted until the loop refuses them
        answer = server.post("/z/flaky", {})
        return answer.status_code == 503 and "keep stopping" in answer.text

    wait_for(looping, 90, "the crash loop's 503")

    def idle() -> bool:
        info = requests.get(f"{server.url}/z/flaky", timeout=10).json()
        return info["status"] == "live" and info["replicas"]["ready"] == 0 and not replica_pids(pid)

    def at_zero() -> bool:  # refused requests are no load: it scales to zero
        # Twice, further apart than the restart pause after three crashes: a replica that was
        # ready and has just died leaves the status "live" until the engine's next step.
        if not idle():
            return False
        time.sleep(1.5)
        return idle()

    wait_for(at_zero, 60, "scaled to zero")
    healthy.touch()  # the cause fixed (a dependency back up): the next request starts a replica
    wait_for(lambda: server.post("/z/flaky", {}).status_code == 200, 60, "served again")
