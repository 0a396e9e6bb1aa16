"""Running for months: rotated logs that show the newest lines, access lines apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from inferd.engine.capacity import machine_cpus
from inferd.logfiles import folder_bytes
from inferd.logreading import files_of
from tests.conftest import INFERD, Server, example, make_project, process_alive, wait_for
from tests.integration.conftest import Inferd, free_port

CHATTY = """
import sys

count = 0


def predict(sample, metadata):
    global count
    if sample.get("unfinished"):
        sys.stdout.write("progress 50%")
        sys.stdout.flush()
        raise ValueError("stopped half way")
    count += 1
    for n in range(sample["lines"]):
        print(f"request {count} line {n} " + "x" * 100)
    print(f"the last line of request {count}")
    return count
"""


def test_logs_show_the_newest_output_and_access_lines_apart(inferd: Inferd, tmp_path: Path) -> None:
    inferd.env["INFERD_LOG_MAX_BYTES"] = str(1 << 20)
    project = make_project(
        tmp_path / "chatty",
        "- kind: deployment\n  name: ops\n- kind: api\n  name: chatty\n  predictor:\n    path: p.py\n",
        {"p.py": CHATTY},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("chatty", "live")
    with requests.Session() as session:
        for _ in range(5):  # 5 x 6,000 lines of ~125 bytes: more than 2 MiB of output
            assert session.post(inferd.url + "/ops/chatty", json={"lines": 6000}, timeout=60).json() >= 1
        for _ in range(200):
            assert session.post(inferd.url + "/ops/chatty", json={"lines": 0}, timeout=60).ok
    logs = inferd.home / "logs"
    last = wait_for(
        lambda: (
            "the last line of request 205" in inferd.run("logs", "chatty").stdout
            and inferd.run("logs", "chatty").stdout
        ),
        60,
        "the newest line in `inferd logs`",
    )
    lines = last.splitlines()
    assert len(lines) == 100 and lines[-1].endswith("the last line of request 205")
    assert '"status":200' not in last  # access lines are not in the replica's output
    assert "ops/chatty [chatty-" in lines[-1]  # unstamped output gets the time, API and replica
    assert len(files_of(logs / "ops" / "chatty.log")) == 4  # 0.5 MiB files, 3 backups
    assert folder_bytes(logs) <= 5 << 20
    assert len(inferd.run("logs", "chatty", "--tail", "3").stdout.splitlines()) == 3
    assert "line 5999" in inferd.run("logs", "chatty", "--tail", "1000").stdout
    recent = inferd.run("logs", "chatty", "--since", "10m").stdout
    assert recent.rstrip().endswith("the last line of request 205") and len(recent) > 1 << 20

    access = wait_for(
        lambda: (
            inferd.run("logs", "chatty", "--access", "--tail", "200").stdout.count("\n") == 200
            and inferd.run("logs", "chatty", "--access", "--tail", "200").stdout
        ),
        60,
        "200 access lines",
    )
    records = [json.loads(line) for line in access.splitlines()]
    assert {r["status"] for r in records} == {200} and {r["api"] for r in records} == {"chatty"}
    bad = inferd.run("logs", "chatty", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since 'yesterday' must be a duration" in bad.stderr

    out = tmp_path / "follow.txt"
    with out.open("wb") as sink:
        follower = subprocess.Popen(
            [str(INFERD), "logs", "chatty", "-f", "--tail", "1"], env=inferd.env, stdout=sink
        )
        try:
            wait_for(lambda: "request 205" in out.read_text(), 30, "the tail before following")
            assert requests.post(inferd.url + "/ops/chatty", json={"lines": 0}, timeout=60).ok
            wait_for(lambda: "the last line of request 206" in out.read_text(), 30, "a followed line")
            assert "request 204" not in out.read_text()
        finally:
            follower.kill()
            follower.wait()

    # Text left without a newline is not glued to the replica's next log record (it was:
    # "progress 50%2026-... ERROR ...", a record --since could not date)
    assert requests.post(inferd.url + "/ops/chatty", json={"unfinished": True}, timeout=60).status_code == 500
    tail = wait_for(
        lambda: "stopped half way" in (text := inferd.run("logs", "chatty", "--tail", "12").stdout) and text,
        30,
        "the failed request's traceback",
    )
    (failed,) = [line for line in tail.splitlines() if "ERROR predict in p.py failed:" in line]
    assert failed[:4].isdigit() and "progress 50%" not in failed, tail
    assert any(line.endswith("progress 50%") for line in tail.splitlines()), tail


def home_bytes(home: Path) -> int:
    return folder_bytes(home) - folder_bytes(home / "logs")


def test_apis_answer_while_a_log_read_waits_on_the_disk(inferd: Inferd, tmp_path: Path) -> None:
    # Was: the admin API read logs on the event loop that answers every API's requests:
    # `inferd logs API --tail 1000000` over rotated files not in the page cache stopped every API
    # for 0.4-0.8 s. Here a log that cannot be opened until the test says (a FIFO) is the disk.
    project = make_project(
        tmp_path / "quick",
        "- kind: deployment\n  name: ops\n- kind: api\n  name: quick\n  predictor:\n    path: p.py\n",
        {"p.py": "def predict(sample, metadata):\n    return sample\n"},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("quick", "live")
    fifo = inferd.home / "logs" / "gone" / "api.log"  # the log a deleted deployment left
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    pid = inferd.operator_pid()
    reader = subprocess.Popen(
        [str(INFERD), "logs", "gone/api", "--no-follow"],
        env=inferd.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def opening() -> bool:  # a thread of the operator waits in open() for the FIFO's writer
        return any(
            (task / "wchan").read_text() == "wait_for_partner" for task in Path(f"/proc/{pid}/task").iterdir()
        )

    try:
        wait_for(opening, 60, "the operator to open the log")
        assert requests.post(inferd.url + "/ops/quick", json={"n": 1}, timeout=10).json() == {"n": 1}
    finally:
        writer = os.open(fifo, os.O_RDWR)  # the log opens: the read goes on
        try:
            reader.communicate(timeout=60)
        finally:
            os.close(writer)
    assert reader.returncode == 0


def test_deploys_leave_only_the_running_and_previous_versions(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    handler = "def post_inference(prediction, signature, metadata):\n    return {version}\n"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: gc\n- kind: api\n  name: versioned\n  onnx:\n    model: m.onnx\n"
        "    request_handler: h.py\n",
        {"h.py": handler.format(version=0), "requirements.txt": "# version 0\n"},
        {"m.onnx": iris_onnx_model},
    )
    foreign = inferd.home / "projects" / "0123456789abcdef01234567"  # not inferd's: never removed
    inferd.run("deploy", str(project))
    first = home_bytes(inferd.home)
    foreign.mkdir(parents=True)
    (foreign / "keep.txt").write_text("mine")
    (inferd.home / "envs" / "notes.txt").write_text("mine too")
    for version in range(1, 4):  # four versions in all: two of them must be gone
        (project / "h.py").write_text(handler.format(version=version))
        (project / "requirements.txt").write_text(f"# version {version}\n")
        inferd.run("deploy", str(project))
        assert inferd.post("/gc/versioned", [[5.1, 3.5, 1.4, 0.2]]).json() == version
    snapshots = [p for p in (inferd.home / "projects").iterdir() if p != foreign]
    environments = [p for p in (inferd.home / "envs").iterdir() if p.is_dir()]
    assert len(snapshots) <= 2 and len(environments) <= 2  # the running version and the previous one
    assert home_bytes(inferd.home) - folder_bytes(foreign) <= 3 * first
    assert (foreign / "keep.txt").exists() and (inferd.home / "envs" / "notes.txt").exists()

    inferd.run("delete", "gc")
    pruned = inferd.run("prune").stdout
    assert pruned.startswith("freed ") and f"home: {inferd.home} holds" in pruned
    assert [p for p in (inferd.home / "projects").iterdir() if p != foreign] == []
    assert "holds" in inferd.run("version").stdout


def test_compute_mem_is_a_request_not_a_kill(inferd: Inferd, tmp_path: Path, iris_onnx_model: Path) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: small\n- kind: api\n  name: modest\n  onnx:\n    model: m.onnx\n"
        "  compute:\n    mem: 16Mi\n",
        {},
        {"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))
    info = inferd.wait_status("modest", "live")
    assert info["replicas"] and all(r["state"] == "ready" for r in info["replicas"])
    # a replica's RSS is far above 16 MiB; it keeps answering past several memory checks
    for _ in range(20):
        assert inferd.post("/small/modest", [[5.1, 3.5, 1.4, 0.2]]).status_code == 200
    assert inferd.api("modest")["status"] == "live" and inferd.api("modest")["failed"] == 0


def test_a_killed_operator_comes_back_by_itself(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: heal\n- kind: api\n  name: sturdy\n  onnx:\n    model: m.onnx\n",
        {},
        {"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("sturdy", "live")
    first = inferd.api("sturdy")["version"]
    (project / "notes.txt").write_text("a second version")
    inferd.run("deploy", str(project))  # exits once it is live
    second = inferd.api("sturdy")["version"]
    assert second != first
    pid, supervisor = inferd.operator_pid(), inferd.operator_pid("supervisor")
    assert pid is not None and supervisor is not None and process_alive(supervisor)

    def answered() -> bool:
        try:
            return inferd.post("/heal/sturdy", [[5.1, 3.5, 1.4, 0.2]], timeout=2).status_code == 200
        except requests.RequestException:
            return False

    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # Was: a command run meanwhile said "the inferd operator is not running (start it: ...)"
    # (exit 1); it waits for the operator its supervisor is bringing back.
    during = inferd.run("get", "sturdy", check=False)
    assert during.returncode == 0 and during.stdout.startswith("status"), during.stderr
    # a new operator process, its zygote's imports and a replica: generous on a loaded machine
    wait_for(answered, 120, "an answer from the restarted operator, with no command run")
    print(f"200 again {time.monotonic() - killed:.1f}s after kill -9 of the operator")
    assert inferd.operator_pid() != pid and inferd.operator_pid("supervisor") == supervisor
    assert "was killed by signal 9; starting it again" in (inferd.home / "operator.log").read_text()
    # The live version comes back, alone: the one it replaced was started first and answered
    # until the newest rolled out again (``inferd logs``: "version FIRST created", then "updated").
    events = inferd.run("logs", "sturdy").stdout
    assert events.count(f"version {first} created") == 1, events
    assert events.count(f"version {second} created") == 1, events
    assert inferd.api("sturdy")["version"] == second

    assert inferd.run("down").stdout.strip() == "the inferd operator stopped"
    wait_for(lambda: not process_alive(supervisor), 30, "the supervisor gone with the operator")

    unit = inferd.run("up", "--systemd").stdout
    assert "ExecStart=" in unit and "-m inferd.operator.daemon" in unit and "Restart=on-failure" in unit
    assert f"INFERD_HOME={inferd.home}" in unit and inferd.operator_pid() is None  # nothing started


def test_prune_removes_the_logs_of_deleted_apis_and_keeps_the_rest(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    api = "- kind: api\n  name: {name}\n  onnx:\n    model: m.onnx\n  payload_log: {{sample: 1.0}}\n"
    keep = make_project(
        tmp_path / "keep",
        "- kind: deployment\n  name: keep\n" + api.format(name="stays") + api.format(name="gone"),
        models={"m.onnx": iris_onnx_model},
    )
    old = make_project(
        tmp_path / "old",
        "- kind: deployment\n  name: old\n" + api.format(name="x"),
        models={"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(keep))
    inferd.run("deploy", str(old))
    for path in ("/keep/stays", "/keep/gone", "/old/x"):
        assert inferd.post(path, [[5.1, 3.5, 1.4, 0.2]]).status_code == 200
    logs, payloads = inferd.home / "logs", inferd.home / "payloads"
    files = {
        "gone": logs / "keep" / "gone.log",
        "x": logs / "old" / "x.log",
        "stays": logs / "keep" / "stays.log",
    }
    recorded = [payloads / path.parent.name / f"{name}.jsonl" for name, path in files.items()]
    wait_for(lambda: all(path.exists() for path in recorded), 30, "the payloads written (in batches)")
    (logs / "old" / "notes.txt").write_text("mine")  # not inferd's: stays

    inferd.run("delete", "keep/gone")
    inferd.run("delete", "old")
    assert "replica is ready" in files["gone"].read_text()  # kept after the delete, until a prune
    # README: `inferd logs` still reads them, by the API's bare name too (as before the delete)
    assert "keep/gone [inferd] deleted" in inferd.run("logs", "gone").stdout

    # One prune, at once: a deleted API's payload file written in the last 5 s was open, and left.
    inferd.run("prune")
    deleted = (*files_of(files["gone"]), payloads / "keep" / "gone.jsonl", *files_of(files["x"]))
    assert [path for path in (*deleted, payloads / "old") if path.exists()] == []
    assert not (logs / "keep" / "gone.access.log").exists()
    assert (logs / "old" / "notes.txt").read_text() == "mine"
    assert files["stays"].exists() and (payloads / "keep" / "stays.jsonl").exists()
    assert inferd.post("/keep/stays", [[5.1, 3.5, 1.4, 0.2]]).status_code == 200


def test_a_rollout_on_a_full_machine_replaces_one_replica_at_a_time(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    half = machine_cpus() / 2  # two replicas fill this machine's cores
    handler = "def post_inference(prediction, signature, metadata):\n    return {version}\n"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: full\n- kind: api\n  name: roomy\n  onnx:\n    model: m.onnx\n"
        f"    request_handler: h.py\n  compute:\n    cpu: {half}\n    min_replicas: 2\n    max_replicas: 2\n",
        {"h.py": handler.format(version=1)},
        {"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("roomy", "live")
    answers: list[object] = []
    failures: list[str] = []
    most = [0]
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(
                        inferd.url + "/full/roomy", json=[[5.1, 3.5, 1.4, 0.2]], timeout=30
                    )
                    if response.status_code == 200:
                        answers.append(response.json())
                    else:
                        failures.append(f"{response.status_code} {response.text}")
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    def watch() -> None:  # in this process: a CLI per look cost a CPU-second, taken from the rollout
        while not stop.is_set():
            running = [r for r in inferd.status("roomy")["replicas"] if r["state"] != "closed"]
            most[0] = max(most[0], len(running))
            time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(3)] + [threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    try:
        (project / "h.py").write_text(handler.format(version=2))
        inferd.run("deploy", str(project))
        wait_for(lambda: answers[-20:] == [2] * 20, 60, "answers from the new version only")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert most[0] <= 2  # never more replicas than the machine holds
    info = inferd.api("roomy")
    assert info["status"] == "live" and info["up_to_date"] == 2


def test_serve_with_fixed_replicas_does_not_autoscale(
    serve: Callable[..., Server], tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: pod\n- kind: api\n  name: single\n  onnx:\n    model: m.onnx\n"
        "  compute:\n    min_replicas: 3\n    max_replicas: 5\n",
        {},
        {"m.onnx": iris_onnx_model},
    )
    server = serve(project, "--replicas", "1")  # what an exported pod runs
    assert "1 replica, fixed" in server.log()
    for _ in range(10):
        assert server.post("/pod/single", [[5.1, 3.5, 1.4, 0.2]]).status_code == 200
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    ready = [
        line
        for line in metrics.splitlines()
        if line.startswith('inferd_replicas{api="single",deployment="pod",state="ready"')
    ]
    assert ready and ready[0].endswith(" 1.0")


def test_a_dashboard_widened_by_inferd_dashboard_host_is_logged(inferd: Inferd) -> None:
    """README, Dashboard: INFERD_DASHBOARD_HOST widens the listener and the operator logs a
    warning then; INFERD_DASHBOARD_PORT fixes the port."""
    port = free_port()
    inferd.env.update(INFERD_DASHBOARD_HOST="0.0.0.0", INFERD_DASHBOARD_PORT=str(port))
    inferd.run("up")
    info = json.loads((inferd.home / "operator.json").read_text())
    assert info["dashboard"] == f"http://127.0.0.1:{port}"
    warning = f"the dashboard listens on 0.0.0.0:{port} (INFERD_DASHBOARD_HOST), reachable from other"
    wait_for(lambda: warning in (inferd.home / "operator.log").read_text(), 30, "the warning in operator.log")
    answer = requests.get(f"http://127.0.0.1:{port}/dashboard/", timeout=30)
    assert answer.status_code == 401  # still only with a session from a one-time link


def operators_of(home: Path) -> list[int]:
    """Pids of operator daemons (and supervisors) running with ``home`` as their INFERD_HOME."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"inferd.operator." in command and f"INFERD_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_commands_run_at_the_same_time_share_one_operator(inferd: Inferd) -> None:
    """README, Deploy: commands run at the same time share one operator (the first starts it)."""
    commands = [
        ["deploy", str(example("iris-onnx"))],
        ["deploy", str(example("iris-predictor"))],
        ["up"],
    ]
    running = [
        subprocess.Popen([str(INFERD), *args], env=inferd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for args in commands
    ]
    for process in running:
        err = process.communicate(timeout=300)[1]
        assert process.returncode == 0, err.decode()
    assert sorted(api["name"] for api in inferd.json("get")) == ["classifier", "predictor"]
    assert len(operators_of(inferd.home)) == 2  # one supervisor and the operator it started


class StallingOrigin:
    """A model origin that serves, then (once ``stall`` is set) sends a model's first bytes and
    nothing more until ``release`` is set."""

    def __init__(self, model: bytes) -> None:
        self.stall, self.release, self.stalled = threading.Event(), threading.Event(), threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(model)))
                self.end_headers()

            def do_GET(self) -> None:
                self.do_HEAD()
                if origin.stall.is_set():
                    self.wfile.write(model[:10])
                    self.wfile.flush()
                    origin.stalled.set()
                    origin.release.wait(120)
                    self.wfile.write(model[10:])
                else:
                    self.wfile.write(model)

            def log_message(self, format: str, *args: object) -> None: ...

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/m.onnx"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def stalling_origin(model: Path) -> Iterator[StallingOrigin]:
    origin = StallingOrigin(model.read_bytes())
    try:
        yield origin
    finally:
        origin.close()


def test_a_deployment_whose_origin_hangs_holds_up_no_other_at_a_restart(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    for origin in stalling_origin(iris_onnx_model):
        remote = make_project(
            tmp_path / "remote",
            "- kind: deployment\n  name: far\n"
            f"- kind: api\n  name: remote\n  onnx:\n    model: {origin.url}\n",
        )
        local = make_project(
            tmp_path / "local",
            "- kind: deployment\n  name: near\n- kind: api\n  name: local\n  onnx:\n    model: m.onnx\n",
            {},
            {"m.onnx": iris_onnx_model},
        )
        inferd.run("deploy", str(remote))  # restored first: deployed first
        inferd.run("deploy", str(local))
        origin.stall.set()
        pid = inferd.operator_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        def answered() -> bool:
            try:
                return inferd.post("/near/local", [[5.1, 3.5, 1.4, 0.2]], timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answered, 120, "the local API back while the other's origin hangs")
        assert origin.stalled.is_set()  # the remote one's download is still waiting
        assert "restored deployment 'far'" not in (inferd.home / "operator.log").read_text()
        origin.release.set()
        wait_for(
            lambda: {api["name"]: api["status"] for api in inferd.json("get")}.get("remote") == "live",
            120,
            "the remote API back too",
        )
