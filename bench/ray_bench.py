"""inferd on Ray vs a bare Ray Serve deployment vs the local engine, in one run (not `make test`).

    .venv/bin/python bench/ray_bench.py [--seconds 8] [--settings default,ongoing1,throughput]

For each Ray setting a fresh two-node Ray cluster on this machine (tests/integration/raycluster,
both nodes on 127.0.0.1) runs examples/iris-onnx twice: as inferd deploys it (``-e``: the
Predictor and handler, one request at a time per replica) and as the bare Ray Serve deployment a
user would write (the same handler logic inline, as bench/peers/rayserve_server.py). Settings:
``default`` (Ray's defaults, inferd's max_ongoing_requests 5), ``ongoing1`` (inferd with
max_ongoing_requests 1), ``throughput`` (RAY_SERVE_THROUGHPUT_OPTIMIZED=1 on every Ray process).
Then ``inferd serve`` (the local engine). Every contender runs one replica; wrk POSTs
sample.json at 1/8/32 connections.
Also: deploy-to-live time on Ray and the resident memory of the cluster's processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.measure import WrkResult, ensure_wrk, run_wrk  # noqa: E402
from bench.servers import free_port  # noqa: E402

EXAMPLE = ROOT / "examples" / "iris-onnx"
SAMPLE = EXAMPLE / "sample.json"
# Every contender runs exactly one replica: autoscaling on a 2-core box would measure replica
# start-ups (Ray's and inferd's autoscalers both add replicas under 32 connections).
FIXED = "  compute:\n    min_replicas: 1\n    max_replicas: 1\n"
SCRIPT = ROOT / "bench" / "post.lua"
LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "ongoing1": {},
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}


class BareIris:
    """The Ray Serve deployment a user would write for the iris model (no inferd)."""

    def __init__(self, model_path: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    async def __call__(self, request: Any) -> str:
        import numpy as np

        sample = await request.json()
        features = [
            sample["sepal_length"],
            sample["sepal_width"],
            sample["petal_length"],
            sample["petal_width"],
        ]
        prediction = self.session.run(None, {self.input_name: np.array([features], dtype=np.float32)})
        label: str = LABELS[prediction[0][0]]
        return label


def session_rss_mib(session: int) -> dict[str, float]:
    """Resident memory of a process session, grouped by what Ray calls each process."""
    groups: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) != session:
            continue
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        if found is None:
            continue
        name = command.split()[0].rsplit("/", 1)[-1] if command else "?"
        if command.startswith("ray::"):
            name = command.split()[0]
            name = re.sub(r"ServeReplica:.*", "ServeReplica", name)
        elif "python" in name and " -m " in command:
            name = "python -m " + command.split(" -m ", 1)[1].split()[0]
        elif "python" in name:
            script = next((part for part in command.split()[1:] if part.endswith(".py")), command.split()[-1])
            name = "python " + script.rsplit("/", 1)[-1]
        groups[name] = groups.get(name, 0.0) + int(found.group(1)) / 1024
    return groups


def measure(url: str, connections: list[int], seconds: float) -> list[WrkResult]:
    body = SAMPLE
    os.environ["BENCH_BODY"] = str(body)
    run_wrk(url, 8, 2, body, SCRIPT)  # warm-up
    return [run_wrk(url, count, seconds, body, SCRIPT) for count in connections]


def ray_setting(
    name: str, connections: list[int], seconds: float, token: Path, project: Path
) -> dict[str, Any]:
    """One cluster: inferd's deployment and the bare one, measured in turn."""
    folder = Path(tempfile.mkdtemp(prefix="inferd-raybench-", dir="/tmp"))
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "INFERD_HOME": str(folder / "home"),
        **SETTINGS[name],
    }
    os.environ.update(env)
    started = time.monotonic()
    cluster = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.raycluster", str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=(folder / "cluster.log").open("wb"),
        start_new_session=True,
    )
    assert cluster.stdout is not None
    address = json.loads(cluster.stdout.readline())["address"]
    result: dict[str, Any] = {
        "setting": name,
        "env": SETTINGS[name],
        "cluster_start_s": time.monotonic() - started,
    }
    try:
        from inferd.engine.ray import plan
        from inferd.engine.ray.backend import RayBackend
        from inferd.environments import Environment

        plan.MAX_ONGOING_REQUESTS = 1 if name == "ongoing1" else 5
        port = free_port()
        backend = RayBackend(Environment(name="bench", provider="ray", address=address, http_port=port))
        started = time.monotonic()
        backend.deploy(project)
        while not any(api["status"] == "live" for api in backend.apis()):
            time.sleep(0.1)
        result["deploy_to_live_s"] = time.monotonic() - started
        base = f"http://127.0.0.1:{port}"
        result["inferd"] = [r.__dict__ for r in measure(f"{base}/iris/classifier", connections, seconds)]
        if name != "ongoing1":
            from ray import serve

            bare = serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.2})(BareIris)
            started = time.monotonic()
            serve.run(bare.bind("models/iris.onnx"), name="bare", route_prefix="/bare")
            result["bare_deploy_to_live_s"] = time.monotonic() - started
            result["bare"] = [r.__dict__ for r in measure(f"{base}/bare", connections, seconds)]
        result["memory_mib"] = session_rss_mib(cluster.pid)
        result["memory_total_mib"] = sum(result["memory_mib"].values())
    finally:
        import ray

        ray.shutdown()
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(60)
        cluster.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)
    return result


def local_engine(connections: list[int], seconds: float, project: Path) -> dict[str, Any]:
    port = free_port()
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/inferd"), "serve", str(project), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import requests

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        results = measure(f"http://127.0.0.1:{port}/iris/classifier", connections, seconds)
        memory = session_rss_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return {
        "local": [r.__dict__ for r in results],
        "memory_mib": memory,
        "memory_total_mib": sum(memory.values()),
    }


def table(results: list[dict[str, Any]], local: dict[str, Any]) -> str:
    lines = ["| run | conns | req/s | p50 ms | p99 ms | errors |", "| --- | --- | --- | --- | --- | --- |"]

    def rows(label: str, runs: list[dict[str, Any]]) -> None:
        for run in runs:
            errors = run["non_2xx"] + sum(run["socket_errors"].values())
            lines.append(
                f"| {label} | {run['connections']} | {run['rps']:.0f} | {run['p50_us'] / 1000:.2f} | "
                f"{run['p99_us'] / 1000:.2f} | {errors} |"
            )

    for result in results:
        rows(f"inferd on Ray ({result['setting']})", result["inferd"])
        if "bare" in result:
            rows(f"bare Ray Serve ({result['setting']})", result["bare"])
    rows("inferd serve (local)", local["local"])
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray.json")
    args = parser.parse_args()
    ensure_wrk()
    connections = [int(c) for c in args.connections.split(",")]
    results = []
    secret = Path(tempfile.mkdtemp(prefix="inferd-raybench-token-"))
    token = secret / "token"  # one for the run: Ray's client keeps the first token it reads
    token.write_text(secrets.token_hex(32))
    project = secret / "iris-onnx"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "cortex.yaml").write_text((project / "cortex.yaml").read_text() + FIXED)
    try:
        for name in args.settings.split(","):
            print(f"ray_bench: setting {name}", flush=True)
            results.append(ray_setting(name, connections, args.seconds, token, project))
        print("ray_bench: local engine", flush=True)
        local = local_engine(connections, args.seconds, project)
    finally:
        shutil.rmtree(secret, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"ray": results, "local": local}, indent=2))
    print(table(results, local))
    for result in results:
        print(
            f"{result['setting']}: cluster start {result['cluster_start_s']:.1f}s, inferd deploy-to-live "
            f"{result['deploy_to_live_s']:.1f}s, Ray processes {result['memory_total_mib']:.0f} MiB RSS"
        )
    print(f"local: inferd serve {local['memory_total_mib']:.0f} MiB RSS")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
