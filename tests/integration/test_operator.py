"""The operator through the CLI: deploy, get, predict, update under load, delete, restart, down."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from tests.conftest import INFERD, example, make_project, process_alive, wait_for
from tests.integration.conftest import Inferd

SAMPLE = json.loads((example("iris-onnx") / "sample.json").read_text())


class Load:
    """Clients sending predictions in a loop; counts answers and failures."""

    def __init__(self, inferd: Inferd, path: str, body: object, clients: int = 4) -> None:
        self.inferd = inferd
        self.path = path
        self.body = body
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(self.inferd.url + self.path, json=self.body, timeout=30)
                    if response.status_code == 200:
                        self.answers[json.dumps(response.json())] += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text}")
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_deploy_get_predict_update_delete_down(inferd: Inferd, tmp_path: Path) -> None:
    project = tmp_path / "iris"
    shutil.copytree(example("iris-onnx"), project)
    first = inferd.run("deploy", str(project))
    assert "started the inferd operator" in first.stderr
    assert first.stdout.strip() == "deployment started"
    info = inferd.wait_status("classifier", "live")
    assert info["url"] == f"{inferd.url}/iris/classifier"
    assert {
        "name",
        "deployment",
        "status",
        "endpoint",
        "url",
        "requested",
        "available",
        "up_to_date",
        "failed",
        "last_update",
        "metrics",
    } <= set(info)

    predicted = inferd.run("predict", "class", str(project / "sample.json"))  # a unique prefix
    assert json.loads(predicted.stdout) == "iris-setosa"
    # --debug: the request's every stage in the API's log (README, "Deploy")
    debugged = inferd.run("predict", "classifier", str(project / "sample.json"), "--debug")
    assert json.loads(debugged.stdout) == "iris-setosa"
    wait_for(
        lambda: "post_inference: 'iris-setosa'" in inferd.run("logs", "classifier").stdout,
        30,
        "the debug log",
    )
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment is up-to-date"

    table = inferd.run("get").stdout.splitlines()
    assert table[0].split() == [
        "api",
        "deployment",
        "status",
        "up-to-date",
        "available",
        "requested",
        "last",
        "update",
    ]
    assert table[1].split()[:6] == ["classifier", "iris", "live", "1", "1", "1"]

    load = Load(inferd, "/iris/classifier", SAMPLE)
    try:
        wait_for(lambda: load.answers['"iris-setosa"'] > 20, 30, "traffic")
        handler = project / "handlers" / "iris.py"
        handler.write_text(
            handler.read_text().replace("labels[predicted_class_id]", '"v2-" + labels[predicted_class_id]')
        )
        assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"
        wait_for(lambda: load.answers['"v2-iris-setosa"'] > 20, 60, "answers of the new version")
    finally:
        load.stop()
    assert load.failures == []
    inferd.wait_status("classifier", "live")

    def drained() -> bool:  # the load may have scaled it up: every ready replica is the new version
        info = inferd.api("classifier")
        return bool(info["stale"] == 0 and info["up_to_date"] == info["available"] >= 1)

    wait_for(drained, 60, "the old version's replicas drained")
    metrics = inferd.api("classifier")["metrics"]
    assert metrics["requests"]["2XX"] >= sum(load.answers.values())
    assert metrics["tracker"]["classes"]["iris-setosa"] >= 1

    logs = inferd.run("logs", "classifier").stdout
    assert "replica is ready" in logs and "updated" in logs

    assert inferd.run("delete", "classifier").stdout.strip() == (
        "deleting api 'iris/classifier', the last of deployment 'iris', which goes with it"
    )
    assert inferd.post("/iris/classifier", SAMPLE).status_code == 404
    assert inferd.json("get") == []
    # its last API deleted, the deployment is gone as if `inferd delete iris` had run: no record
    # to restore, its snapshots collected (they stayed, and a restart restored an empty 'iris')
    state = json.loads((inferd.home / "state.json").read_text())
    assert state["deployments"] == {}
    inferd.run("prune")
    assert not [p for p in (inferd.home / "projects").iterdir() if not p.name.startswith(".")]
    pid = inferd.operator_pid()
    assert pid is not None
    assert inferd.run("down").stdout.strip() == "the inferd operator stopped"
    assert not process_alive(pid)


def test_logs_are_read_from_disk_after_down(inferd: Inferd) -> None:
    # Was: after `inferd down`, `inferd logs API` said the operator is not running, though the
    # log files, the first place to look for why something stopped, were on disk.
    inferd.run("deploy", str(example("iris-onnx")))
    inferd.wait_status("classifier", "live")
    assert inferd.post("/iris/classifier", SAMPLE).ok
    inferd.run("down")
    logs = inferd.run("logs", "classifier")
    assert "replica is ready" in logs.stdout and "version" in logs.stdout
    access = inferd.run("logs", "iris/classifier", "--access").stdout
    assert '"status":200' in access.replace(" ", "")
    assert inferd.operator_pid() is None  # reading them started nothing
    missing = inferd.run("logs", "nothing", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: no API named 'nothing' has a log in ")


def test_operator_restart_restores_apis_and_secures_admin(inferd: Inferd) -> None:
    inferd.run("deploy", str(example("iris-onnx")))
    inferd.wait_status("classifier", "live")
    token_file = inferd.home / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    admin_port = json.loads((inferd.home / "operator.json").read_text())["admin_port"]
    admin = f"http://127.0.0.1:{admin_port}/apis"
    refused = requests.get(admin, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer ")  # RFC 9110 15.5.2
    assert requests.get(admin, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 403
    good = {"Authorization": f"Bearer {token_file.read_text()}"}
    assert requests.get(admin, headers=good, timeout=5).status_code == 200

    deployed = inferd.api("classifier")["last_update"]
    pid = inferd.operator_pid()
    assert pid is not None
    replicas = inferd.replica_pids("classifier")
    ids = {replica["id"] for replica in inferd.status("classifier")["replicas"]}
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not process_alive(pid) and not any(process_alive(r) for r in replicas),
        60,
        "operator and replicas gone",
    )
    assert "running" in inferd.run("up").stdout
    inferd.wait_status("classifier", "live")
    assert inferd.post("/iris/classifier", SAMPLE).json() == "iris-setosa"
    # the new replicas are numbered on from the old ones (both are in the API's log)
    assert not ids & {replica["id"] for replica in inferd.status("classifier")["replicas"]}
    # `last update` is when the API was deployed, not when the operator came back
    assert inferd.api("classifier")["last_update"] == deployed


def test_an_operator_file_left_from_before_a_reboot_does_not_hold_up(inferd: Inferd) -> None:
    # After a reboot, operator.json's pids can belong to other processes: `inferd up` waited
    # 60 s for a "supervisor" that was some other program, then failed.
    other = subprocess.Popen(["sleep", "300"])
    try:
        inferd.home.mkdir(parents=True)
        record = {"pid": other.pid, "supervisor": other.pid, "admin_port": 1}
        (inferd.home / "operator.json").write_text(json.dumps(record))
        (inferd.home / "token").write_text("from before")
        asked = inferd.run("get", check=False)  # was: "cannot reach the operator: [Errno 111] ..."
        assert asked.returncode == 1 and "the inferd operator is not running" in asked.stderr
        assert "operator is running" in inferd.run("up", timeout=40).stdout
        assert inferd.operator_pid() not in (None, other.pid)
        assert other.poll() is None  # not ours: left alone
    finally:
        other.kill()
        other.wait()


def test_killed_replica_under_load_is_replaced(inferd: Inferd, tmp_path: Path, iris_onnx_model: Path) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: crash\n- kind: api\n  name: slow\n  onnx:\n    model: m.onnx\n"
        "    request_handler: h.py\n  compute:\n    init_replicas: 2\n    max_replicas: 2\n",
        {
            "h.py": "import time\ndef pre_inference(sample, signature, metadata):\n"
            "    time.sleep(0.05)\n    return [1, 2, 3, 4]\n"
        },
        {"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("slow", "live")
    wait_for(lambda: len(inferd.replica_pids("slow")) == 2, 60, "two replicas")
    load = Load(inferd, "/crash/slow", {}, clients=4)
    try:
        wait_for(lambda: sum(load.answers.values()) > 20, 30, "traffic")
        victim = inferd.replica_pids("slow")[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: len(inferd.replica_pids("slow")) == 2 and victim not in inferd.replica_pids("slow"),
            60,
            "a replacement replica",
        )
        before = sum(load.answers.values())
        wait_for(lambda: sum(load.answers.values()) > before + 20, 30, "traffic after the crash")
    finally:
        load.stop()
    assert len(load.failures) <= 1  # at most the request the killed replica was running
    assert all(failure.startswith("503") for failure in load.failures)
    assert inferd.api("slow")["failed"] == 1


def test_autoscaling_up_and_down_and_cold_start(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    handler = (
        "import time\ndef pre_inference(sample, signature, metadata):\n"
        "    time.sleep(0.1)\n    return [1, 2, 3, 4]\n"
    )
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: scale\n"
        "- kind: api\n  name: elastic\n  onnx:\n    model: m.onnx\n    request_handler: h.py\n"
        "  compute:\n    min_replicas: 1\n    max_replicas: 3\n"
        "  autoscaling:\n    upscale_window: 1\n    downscale_window: 4\n"
        "- kind: api\n  name: cold\n  onnx:\n    model: m.onnx\n"
        "  compute:\n    min_replicas: 0\n    max_replicas: 1\n    init_replicas: 0\n",
        {"h.py": handler},
        {"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("elastic", "live")
    cold = inferd.api("cold")
    assert cold["status"] == "live" and cold["requested"] == 0 and cold["available"] == 0
    assert inferd.post("/scale/cold", [[5.2, 3.6, 1.4, 0.3]], timeout=60).json()[0] == [
        0
    ]  # waits, no failure
    assert inferd.api("cold")["available"] == 1

    load = Load(inferd, "/scale/elastic", {}, clients=6)
    try:
        wait_for(lambda: inferd.status("elastic")["requested"] == 3, 30, "scale up to max_replicas")
        wait_for(lambda: inferd.status("elastic")["available"] == 3, 60, "three ready replicas")
    finally:
        load.stop()
    assert load.failures == []
    wait_for(lambda: inferd.status("elastic")["requested"] == 1, 30, "scale down to min_replicas")
    wait_for(lambda: inferd.status("elastic")["available"] == 1, 60, "one replica left")


def test_an_api_that_can_scale_to_zero_keeps_its_replica_while_requests_come(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """Requests every 0.1 s, each done in a few ms, are rarely in flight at the engine's look
    (every 0.25 s): the API was taken for idle, scaled to zero and started again for the next
    request, a cold start every few seconds (the soak's API at 5 requests a second with a 15 s
    window: 11 replicas in 4 minutes, answers of 1-2 s). It is idle only once none came."""
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: trickle\n"
        "- kind: api\n  name: cold\n  onnx:\n    model: m.onnx\n"
        "  compute:\n    min_replicas: 0\n    max_replicas: 1\n"
        "  autoscaling:\n    downscale_window: 2\n",
        {},
        {"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))
    seen: set[str] = set()
    for _ in range(60):  # three downscale windows and more
        assert inferd.post("/trickle/cold", [[5.2, 3.6, 1.4, 0.3]], timeout=60).status_code == 200
        seen.update(replica["id"] for replica in inferd.status("cold")["replicas"])
        time.sleep(0.1)
    assert len(seen) == 1, seen
    wait_for(lambda: inferd.status("cold")["requested"] == 0, 60, "scale to zero once no request comes")


HUNGRY = """
import time


def predict(sample, metadata):
    held = b"x" * (400 << 20)  # written, so resident: over the API's 200Mi
    time.sleep(120)
    return len(held)
"""


def test_errors_are_reported_and_other_apis_keep_serving(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: mixed\n"
        "- kind: api\n  name: good\n  onnx:\n    model: m.onnx\n"
        "- kind: api\n  name: broken\n  onnx:\n    model: m.onnx\n    request_handler: bad.py\n"
        # scaled to zero, still started once: the deploy says it cannot load (it exited 0, live)
        "- kind: api\n  name: broken-cold\n  onnx:\n    model: m.onnx\n    request_handler: bad.py\n"
        "  compute:\n    min_replicas: 0\n"
        # more cores than any machine has (64 fitted on a machine with 64)
        "- kind: api\n  name: huge\n  onnx:\n    model: m.onnx\n  compute:\n    cpu: 4096\n"
        # (a ballast of its own: a replica forked from the zygote shares onnxruntime's memory)
        "- kind: api\n  name: greedy\n  onnx:\n    model: m.onnx\n    request_handler: ballast.py\n"
        "  compute:\n    mem_limit: 10Mi\n"
        "- kind: api\n  name: gpu\n  onnx:\n    model: m.onnx\n  compute:\n    gpu: 1\n"
        "- kind: api\n  name: hungry\n  predictor:\n    path: hungry.py\n  compute:\n    mem_limit: 200Mi\n",
        {
            "bad.py": "def pre_inference(sample, metadata):\n    return sample\n",
            "hungry.py": HUNGRY,
            "ballast.py": "BALLAST = b'\\x01' * (64 << 20)\n",
        },
        {"m.onnx": iris_onnx_model},
    )
    deployed = inferd.run("deploy", str(project), check=False)
    assert deployed.returncode == 1, deployed.stderr
    for failure in (
        "api 'broken' failed (error): ",
        "api 'broken-cold' failed (error): ",
        "api 'huge' failed (compute unavailable): ",
        "api 'gpu' failed (compute unavailable): ",
        # Was: `(error (out of memory)): error (out of memory)`, with no word of the limit
        "api 'greedy' failed (error (out of memory)): its replicas used more than compute.mem_limit (10Mi)",
    ):
        assert failure in deployed.stderr, deployed.stderr + inferd.run("logs", "greedy", check=False).stdout
    assert "api 'good' failed" not in deployed.stderr
    inferd.wait_status("good", "live")
    assert "CPUExecutionProvider" in inferd.run("get", "good", "-v").stdout  # what its replica runs on
    broken = inferd.wait_status("broken", "error")
    assert "pre_inference(sample, metadata) must take 3 arguments" in broken["error"]
    assert "must take 3 arguments" in inferd.run("get", "broken").stdout
    assert "must take 3 arguments" in inferd.run("logs", "broken").stdout
    inferd.wait_status("huge", "compute unavailable")
    gpu = inferd.wait_status("gpu", "compute unavailable")  # no GPU on this machine
    assert gpu["error"].startswith("needs 1 GPU (compute.gpu) per replica; this machine has no GPU")
    assert "compute unavailable: needs 1 GPU" in inferd.run("get", "gpu").stdout
    inferd.wait_status("greedy", "error (out of memory)")
    assert inferd.post("/mixed/good", [[1, 2, 3, 4]]).status_code == 200
    # Was: 503 "the replica running this request stopped before answering; retry it", which
    # a retry of the same request met again.
    hungry = inferd.post("/mixed/hungry", {}, timeout=120)
    assert hungry.status_code == 500
    assert hungry.json()["error"] == (
        "the replica running this request used more than compute.mem_limit (200Mi) and was stopped"
    )

    # A new version that fails to load leaves the old one serving.
    (project / "cortex.yaml").write_text(
        "- kind: deployment\n  name: mixed\n"
        "- kind: api\n  name: good\n  onnx:\n    model: m.onnx\n    request_handler: bad.py\n"
    )
    assert inferd.run("deploy", str(project), "--no-wait").stdout.strip() == "deployment updated"
    failed = inferd.wait_status("good", "error")
    assert failed["available"] == 1 and failed["up_to_date"] == 0
    assert inferd.post("/mixed/good", [[1, 2, 3, 4]]).status_code == 200
    assert inferd.post("/mixed/broken", {}).status_code == 404  # removed from the config


def test_requirements_are_installed_once_and_importable(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    handler = (
        "import humanize, boto3, msgpack, requests, dill, numpy\n"
        "def post_inference(prediction, signature, metadata):\n"
        "    return humanize.intcomma(1234567)\n"
    )
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: deps\n- kind: api\n  name: pretty\n  onnx:\n    model: m.onnx\n"
        "    request_handler: h.py\n",
        {"h.py": handler, "requirements.txt": "humanize\n"},
        {"m.onnx": iris_onnx_model},
    )
    # a refresh of a project never deployed starts it (it said "deployment refreshed")
    assert inferd.run("refresh", str(project)).stdout.strip() == "deployment started"
    assert inferd.post("/deps/pretty", [[1, 2, 3, 4]]).json() == "1,234,567"
    assert len(list((inferd.home / "envs").iterdir())) == 1
    before = inferd.api("pretty")["replicas"][0]["pid"]
    refreshed = inferd.run("refresh", str(project))  # the cached packages are reused, and not "installed"
    assert refreshed.stdout.strip() == "deployment refreshed"  # README: redeployed even if unchanged
    assert [r["pid"] for r in inferd.api("pretty")["replicas"] if r["state"] == "ready"] != [before]
    assert inferd.run("logs", "pretty").stdout.count("installing requirements.txt") == 1

    (project / "requirements.txt").write_text("this-package-does-not-exist-anywhere-inferd==1.0\n")
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: api 'pretty' failed (error): requirements.txt: this-package-does-not-exist-anywhere-inferd"
        "==1.0: the index has no package this-package-does-not-exist-anywhere-inferd"
    )
    assert last.endswith("the previous version keeps serving")
    failed = inferd.wait_status("pretty", "error")
    assert "the index has no package" in failed["error"]
    assert inferd.post("/deps/pretty", [[1, 2, 3, 4]]).json() == "1,234,567"  # the old version serves


def test_cli_errors_are_one_sentence_with_exit_codes(inferd: Inferd, tmp_path: Path) -> None:
    bad = make_project(
        tmp_path / "bad", "- kind: deployment\n  name: x\n- kind: api\n  name: y\n  onnx: {}\n"
    )
    result = inferd.run("deploy", str(bad), check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: cortex.yaml:5: api 'y': onnx.model: required field is missing"
    assert inferd.run("get", check=False).returncode == 1  # no operator yet
    assert "not running" in inferd.run("get", check=False).stderr
    assert inferd.run("deploy", str(example("iris-onnx")), "-e", "cloud", check=False).returncode == 2
    inferd.run("up")
    missing = inferd.run("predict", "nope", str(example("iris-onnx") / "sample.json"), check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no API named 'nope'")
    assert "Traceback" not in missing.stderr


def test_commands_starting_the_operator_at_once_share_one(inferd: Inferd) -> None:
    # Two shells, or a script's parallel deploys, on a machine where no operator runs yet.
    starting = [
        subprocess.Popen(
            [str(INFERD), "up"], env=inferd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in starting]
    assert [process.returncode for process in starting] == [0, 0, 0], outputs
    pid = inferd.operator_pid()
    assert pid is not None
    said = [out.strip() for out, _ in outputs]
    assert sum(line.startswith("the inferd operator is running") for line in said) == 1, said
    assert all(f"(pid {pid})" in line for line in said), said


class HeldModel:
    """An HTTP origin serving one model file, whose downloads wait until ``release()``."""

    def __init__(self, model: Path) -> None:
        body = model.read_bytes()
        self.asked = threading.Event()
        self.released = threading.Event()
        held = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"v1"')
                self.end_headers()

            def do_GET(self) -> None:
                held.asked.set()
                held.released.wait(120)
                self.do_HEAD()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/iris.onnx"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def test_the_same_project_deployed_twice_at_once_waits_and_another_is_refused(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    origin = HeldModel(iris_onnx_model)
    try:
        project = make_project(
            tmp_path / "p",
            f"- kind: deployment\n  name: shop\n- kind: api\n  name: iris\n"
            f"  onnx:\n    model: {origin.url}\n",
        )

        def deploy() -> subprocess.Popen[str]:
            command = [str(INFERD), "deploy", str(project), "--no-wait"]
            return subprocess.Popen(
                command, env=inferd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )

        inferd.run("up")
        first = deploy()
        assert origin.asked.wait(60)  # the first deploy is downloading its model, under the lock
        (project / "notes.txt").write_text("changed while the first deploy runs")
        other = deploy()
        _, refused = other.communicate(timeout=60)
        assert other.returncode != 0
        assert (
            refused.strip() == "error: deployment 'shop' is currently updating; use --force to deploy over it"
        )
        (project / "notes.txt").unlink()  # the project is as the first deploy read it again
        second = deploy()
        waiting = "deployment 'shop': waiting for the deploy in progress to finish"
        wait_for(
            lambda: waiting in (inferd.home / "operator.log").read_text(), 60, "the second deploy waiting"
        )
        origin.release()
        said = [process.communicate(timeout=120) for process in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], said
        assert [out.strip() for out, _ in said] == ["deployment started", "deployment is up-to-date"]
    finally:
        origin.close()
    inferd.wait_status("iris", "live")


def test_a_home_that_cannot_be_made_is_one_sentence(inferd: Inferd, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    inferd.env["INFERD_HOME"] = str(tmp_path / "a-file" / "home")
    for command in (("up",), ("deploy", str(example("iris-onnx")))):
        result = inferd.run(*command, check=False)
        assert result.returncode == 1
        home = tmp_path / "a-file" / "home"
        assert result.stderr == (
            f"error: cannot write INFERD_HOME {home} (Not a directory): "
            "set INFERD_HOME to a folder you can write\n"
        )


def test_a_home_whose_parent_cannot_be_made_is_one_sentence(inferd: Inferd, tmp_path: Path) -> None:
    # Was "error: Permission denied (/nonexistent)": a user whose HOME does not exist (a service
    # account's /nonexistent) was not told that INFERD_HOME was what inferd tried to make there.
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    home = locked / "nonexistent" / ".inferd"
    inferd.env["INFERD_HOME"] = str(home)
    # root may write any folder: without CAP_DAC_OVERRIDE it is refused as a user is
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    for command in (["up"], ["deploy", str(example("iris-onnx"))]):
        run = [*unprivileged, str(INFERD), *command]
        result = subprocess.run(run, env=inferd.env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 1
        assert result.stderr == (
            f"error: cannot write INFERD_HOME {home} (Permission denied: {locked / 'nonexistent'}): "
            "set INFERD_HOME to a folder you can write\n"
        ), result.stderr


def test_an_operator_whose_port_is_taken_says_how_to_move_it(inferd: Inferd) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", inferd.port))
        taken.listen()
        result = inferd.run("up", check=False, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the operator could not start: cannot listen on 127.0.0.1:{inferd.port}: "
        "Address already in use; set INFERD_PORT to another port"
    )
