"""The ``ray`` environment against a real two-node Ray cluster on this machine.

One cluster for the module (head and worker node on 127.0.0.1, 2 CPUs each); the real CLI
deploys the examples with ``-e``, predictions go through Ray Serve's HTTP proxy, replicas land
on both nodes, a handler update rolls with no failed request under load, and at the end no
process of the cluster is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from httpx_sse import connect_sse

from tests.conftest import ROOT, example, wait_for
from tests.integration.conftest import Inferd, free_port

CLUSTER_START = 120.0


class RayTestCluster:
    """The cluster helper process and the inferd CLI pointed at it (environment ``lab``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        token = folder / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        # Ray writes its address file into $RAY_TMPDIR/ray (default /tmp/ray) without creating the
        # folder; a fresh machine has none, so the test owns one.
        ray_tmp = folder / "raytmp"
        (ray_tmp / "ray").mkdir(parents=True)
        self.env = dict(
            os.environ,
            RAY_TMPDIR=str(ray_tmp),
            RAY_AUTH_MODE="token",  # never the token of another Ray on this machine
            RAY_AUTH_TOKEN_PATH=str(token),
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            RAY_USAGE_STATS_ENABLED="0",
            # Serve's loops at their defaults (metrics every 100 ms, the controller every 100 ms,
            # Ray's own metrics and task events) cost 0.22 of a core on an idle test cluster;
            # at these, 0.14 (measured: the CPU of the cluster's processes over 60 s, one API).
            RAY_SERVE_METRICS_EXPORT_INTERVAL_MS="2000",
            RAY_SERVE_CONTROL_LOOP_INTERVAL_S="0.5",
            RAY_enable_metrics_collection="0",
            RAY_task_events_report_interval_ms="0",
            PYTHONUNBUFFERED="1",
        )
        self.log = (folder / "cluster.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.raycluster", str(folder)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,  # every Ray process of the cluster shares this session
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the helper prints once both nodes are up
        if not line:
            raise AssertionError(f"the Ray cluster did not start:\n{self.log_text()}")
        self.address = str(json.loads(line)["address"])
        self.http_port = free_port()
        self.inferd = Inferd(folder / "home")
        self.inferd.env.update(self.env)
        self.inferd.env["INFERD_HOME"] = str(folder / "home")
        self.inferd.run("env", "add", "lab", "--address", self.address, "--http-port", str(self.http_port))
        self.url = f"http://127.0.0.1:{self.http_port}"

    def log_text(self) -> str:
        return (self.folder / "cluster.log").read_text(errors="replace")[-4000:]

    def processes(self) -> list[int]:
        """Live processes of the cluster: its session, or anything naming its temp folder."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            state, session = fields[0], int(fields[3])
            if state == "Z":
                continue
            if session == self.process.pid or str(self.folder) in command:
                found.append(int(entry.name))
        return found

    def agents(self) -> list[int]:
        """inferd's agent actors (``cluster.agent_class``) alive on the cluster."""
        found = []
        for pid in self.processes():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::InferdServeAgent"):
                    found.append(pid)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        for pid in self.processes():  # what shutdown missed: ours, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.close()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.inferd.run(*args, check=check)

    def api(self, name: str) -> dict[str, Any] | None:
        apis = json.loads(self.run("get", "-e", "lab", "-o", "json").stdout)
        return next((api for api in apis if api["name"] == name), None)

    def wait_live(self, name: str, replicas: int = 1, timeout: float = 180) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            api = self.api(name)
            ok = api and api["status"] == "live" and api["up_to_date"] >= replicas and not api["stale"]
            return api if ok else None

        return dict(wait_for(settled, timeout, f"api '{name}' live with {replicas} replicas"))


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayTestCluster]:
    folder = Path(tempfile.mkdtemp(prefix="inferd-ray-", dir="/tmp"))  # short: Ray's socket paths
    cluster = RayTestCluster(folder)
    try:
        yield cluster
    finally:
        cluster.stop()
        left = wait_for(lambda: not cluster.processes() or None, 30, "the cluster's processes to end")
        shutil.rmtree(folder, ignore_errors=True)
        assert left


def _project(root: Path, source: str, deployment: str, **compute: Any) -> Path:
    shutil.copytree(example(source), root, ignore=shutil.ignore_patterns("__pycache__"))
    config = root / "cortex.yaml"
    text = re.sub(r"(kind: deployment\n  name: )\S+", rf"\g<1>{deployment}", config.read_text())
    if compute:
        text += "  compute:\n" + "".join(f"    {key}: {value}\n" for key, value in compute.items())
    config.write_text(text)
    return root


def test_onnx_on_ray_and_deleting_everything(ray_cluster: RayTestCluster, tmp_path: Path) -> None:
    project = _project(tmp_path / "onnx", "iris-onnx", "iris")
    deployed = ray_cluster.run("deploy", str(project), "-e", "lab")
    assert "deployment started" in deployed.stdout
    ray_cluster.wait_live("classifier")
    predicted = ray_cluster.run("predict", "classifier", str(project / "sample.json"), "-e", "lab")
    assert json.loads(predicted.stdout) == "iris-setosa"
    sample = json.loads((project / "sample.json").read_text())
    answer = requests.post(f"{ray_cluster.url}/iris/classifier", json=sample, timeout=30)
    assert answer.status_code == 200 and answer.json() == "iris-setosa"
    bad = requests.post(f"{ray_cluster.url}/iris/classifier", data=b"{not json", timeout=30)
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
    v2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.2, 3.6, 1.4, 0.3]}]}
    inferred = requests.post(f"{ray_cluster.url}/v2/models/classifier/infer", json=v2, timeout=30)
    assert inferred.status_code == 200 and inferred.json()["outputs"][0]["data"] == [0]
    tf = requests.post(
        f"{ray_cluster.url}/v1/models/classifier:predict",
        json={"instances": [[5.2, 3.6, 1.4, 0.3]]},
        timeout=30,
    )
    assert tf.status_code == 200 and tf.json()["predictions"][0]["output_label"] == 0
    assert requests.get(f"{ray_cluster.url}/v2/models/nothing", timeout=30).status_code == 404
    again = ray_cluster.run("deploy", str(project), "-e", "lab")
    assert "deployment is up-to-date" in again.stdout
    logs = ray_cluster.run("logs", "classifier", "-e", "lab")
    assert "replica is ready" in logs.stdout
    # Commands that only read ask inferd's agent actor (one, however many commands ran).
    assert len(ray_cluster.agents()) == 1

    # Deleting every deployment (this one, and any the other tests left) leaves no route behind.
    apis = json.loads(ray_cluster.run("get", "-e", "lab", "-o", "json").stdout)
    for deployment in sorted({api["deployment"] for api in apis}):
        ray_cluster.run("delete", deployment, "-e", "lab")
    # The agent that answered the reads above goes with the last API, before any other command
    # (the delete's own wait saw the routers still draining, and the agent stayed for good).
    wait_for(lambda: not ray_cluster.agents() or None, 60, "inferd's agent actor to stop")
    wait_for(lambda: ray_cluster.api("classifier") is None, 60, "the API to be deleted")

    def routers_gone() -> bool:
        try:
            return requests.get(f"{ray_cluster.url}/v2/models", timeout=5).status_code == 404
        except requests.RequestException:
            return True

    wait_for(routers_gone, 60, "the routers to be deleted")
    missing = ray_cluster.run("get", "classifier", "-e", "lab", check=False)
    assert missing.returncode == 1 and "no API named 'classifier'" in missing.stderr
    # A `get` that finds nothing of inferd's leaves nothing running either.
    wait_for(lambda: not ray_cluster.agents() or None, 60, "inferd's agent actor to stop")


def test_tensorflow_on_ray(ray_cluster: RayTestCluster, tmp_path: Path) -> None:
    project = _project(tmp_path / "tf", "iris-tensorflow", "iris-tf")
    ray_cluster.run("deploy", str(project), "-e", "lab")
    ray_cluster.wait_live("tensorflow", timeout=180)
    predicted = ray_cluster.run("predict", "tensorflow", str(project / "sample.json"), "-e", "lab")
    assert json.loads(predicted.stdout) == "setosa"
    deleted = ray_cluster.run("delete", "iris-tf", "-e", "lab")
    assert "deleting deployment 'iris-tf'" in deleted.stdout
    assert ray_cluster.api("tensorflow") is None


def test_streaming_on_ray(ray_cluster: RayTestCluster, tmp_path: Path) -> None:
    project = _project(tmp_path / "text", "text-generator", "text")
    # Words 150 ms apart (the example's 50 ms, slower): 1.65 s from the first to the last, so a
    # late first word on a busy machine cannot bring the spread checked below under 0.25 s.
    config = project / "cortex.yaml"
    config.write_text(config.read_text().replace("token_delay: 0.05", "token_delay: 0.15"))
    # On a busy machine Ray may take more than 30 s to start the replica's worker, and Serve then
    # warns of an unscheduled replica although the cluster has room: deploy waits on, exit 0.
    ray_cluster.run("deploy", str(project), "-e", "lab")
    ray_cluster.wait_live("generator", timeout=300)
    sample = json.loads((project / "sample.json").read_text())
    times = []
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        with connect_sse(client, "POST", f"{ray_cluster.url}/text/generator", json=sample) as source:
            words = []
            for event in source.iter_sse():
                times.append(time.perf_counter() - started)
                words.append(event.json())
        lines = client.post(f"{ray_cluster.url}/text/generator", json=sample)
    assert lines.headers["content-type"] == "application/x-ndjson"
    assert len(words) == 12 and words == [json.loads(line) for line in lines.text.splitlines()]
    # 12 words 150 ms apart: they arrive as they are made, not all at the end
    print(f"on Ray: first word after {times[0] * 1000:.0f} ms, last after {times[-1] * 1000:.0f} ms")
    assert times[-1] - times[0] > 0.25
    ray_cluster.run("delete", "text", "-e", "lab")


def test_replicas_spread_and_rolling_update(ray_cluster: RayTestCluster, tmp_path: Path) -> None:
    project = _project(tmp_path / "spread", "iris-onnx", "spread", min_replicas=2, max_replicas=2, cpu=0.5)
    api = project / "cortex.yaml"
    api.write_text(api.read_text().replace("name: classifier", "name: spread-classifier"))
    ray_cluster.run("deploy", str(project), "-e", "lab")
    live = ray_cluster.wait_live("spread-classifier", replicas=2)
    nodes = {replica["node_id"] for replica in live["replicas"] if replica["state"] == "running"}
    assert len(nodes) == 2, live["replicas"]

    url = f"{ray_cluster.url}/spread/spread-classifier"
    sample = json.loads((project / "sample.json").read_text())
    answers: list[tuple[int, Any]] = []
    stop = threading.Event()

    def client() -> None:
        # A steady stream, not a flood: more clients, or no pause, would take both cores from the
        # rollout they watch (and from the tests beside this one) for no more coverage.
        with requests.Session() as session:
            while not stop.is_set() and len(answers) < 20000:
                response = session.post(url, json=sample, timeout=60)
                answers.append((response.status_code, response.json()))
                stop.wait(0.05)

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    try:
        wait_for(lambda: len(answers) > 20, 60, "requests before the update")
        handler = project / "handlers" / "iris.py"
        handler.write_text(handler.read_text() + "\nlabels = [label.upper() for label in labels]\n")
        updated = ray_cluster.run("deploy", str(project), "-e", "lab")
        assert "deployment updated" in updated.stdout
        ray_cluster.wait_live("spread-classifier", replicas=2)
        seen = len(answers)
        wait_for(lambda: len(answers) > seen + 20, 60, "requests after the update")
    finally:
        stop.set()
        for thread in clients:
            thread.join(90)
    failures = [answer for answer in answers if answer[0] != 200]
    assert not failures, failures[:5]
    results = [body for _, body in answers]
    assert results[0] == "iris-setosa" and results[-1] == "IRIS-SETOSA"
    ray_cluster.run("delete", "spread", "-e", "lab")
    wait_for(lambda: ray_cluster.api("spread-classifier") is None, 60, "the API to be deleted")


def test_an_address_where_no_cluster_answers_fails_at_once(tmp_path: Path) -> None:
    """Nothing listens at the environment's address: one sentence, exit 1, no minutes of Ray's
    retries (a ``HOST:PORT`` address waited for a GCS about 13 minutes, printing every 5 s)."""
    inferd = Inferd(tmp_path / "home")
    port = free_port()
    for name, address in (("node", f"127.0.0.1:{port}"), ("client", f"ray://127.0.0.1:{port}")):
        inferd.run("env", "add", name, "--address", address)
        for command in (("deploy", str(example("iris-onnx"))), ("get",)):
            failed = inferd.run(*command, "-e", name, check=False, timeout=60)
            assert failed.returncode == 1, failed
            assert failed.stderr.splitlines() == [
                f"error: cannot connect to the Ray cluster at {address}: nothing answers at "
                f"127.0.0.1:{port} (Connection refused); is the cluster up (`ray status` on its head node)?"
            ], failed.stderr
