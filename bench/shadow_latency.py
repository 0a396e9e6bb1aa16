"""What a shadow costs the client: p50 latency with and without a 100% shadow, in one run.

Deploys examples/iris-onnx twice on one private operator (its own INFERD_HOME and port), as
deployments `plain` and `shadowed`, each with the classifier and an identical second API
(`candidate`); in `shadowed` the classifier has `shadow: {api: candidate, percent: 100}`, so
every request is copied, answered twice and both answers written to the payload log. wrk loads
each at 1 connection (and at 8), rounds alternating which goes first, and the medians of the
rounds' p50 are compared. A short run (a few seconds per round), not part of `make bench`:
`python bench/shadow_latency.py`.

A third row, `busy`, loads `plain` again while an unrelated busy loop runs at the lowest CPU
priority there is (SCHED_IDLE, below any nice value, in a session of its own whose autogroup is
at nice 19: where Linux groups processes by session, a SCHED_IDLE process yields only to those of
its own group, and competed with the gateway's at full weight): what a shadow's work would cost
the clients on this machine even if its scheduling were perfect. On a machine with cores to
spare it is close to `plain`.

wrk is the harshest client there is (it sends the next request microseconds after an answer); a
third load, `python`, is a client as users write them: Python's http.client on one keep-alive
connection, one request after another.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import WrkResult, ensure_wrk, read_stat, run_wrk  # noqa: E402
from bench.servers import free_port  # noqa: E402

INFERD = str(Path(sys.executable).parent / "inferd")
CANDIDATE = """
- kind: api
  name: candidate
  onnx:
    model: models/iris.onnx
    request_handler: handlers/iris.py
"""


def project(work: Path, name: str, shadow: bool) -> Path:
    folder = work / name
    shutil.copytree(ROOT / "examples" / "iris-onnx", folder)
    config = folder / "cortex.yaml"
    text = config.read_text().replace("name: iris", f"name: {name}", 1)
    config.write_text(text + ("  shadow: {api: candidate, percent: 100}\n" if shadow else "") + CANDIDATE)
    return folder


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


# The busy row's load: pure Python, one core, at SCHED_IDLE (set in the child before it runs).
BUSY = "while True: sum(range(1000))"


def idle_priority() -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(OSError):  # a kernel without autogroups
        Path("/proc/self/autogroup").write_text("19")  # the new session's group (start_new_session)


LOADS = ("1 connection", "8 connections", "python")  # wrk at 1 and 8 connections, http.client


def python_client(url: str, duration: float, body: bytes) -> tuple[int, float, float]:
    """Requests one after another on one keep-alive connection for ``duration`` seconds: how
    many, and their p50 and p99 in microseconds."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    headers = {"Content-Type": "application/json"}
    took: list[float] = []
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            start = time.perf_counter()
            connection.request("POST", parts.path, body, headers)
            response = connection.getresponse()
            response.read()
            took.append(time.perf_counter() - start)
            if response.status != 200:
                raise SystemExit(f"{url} answered {response.status}")
    finally:
        connection.close()
    took.sort()
    return len(took), took[len(took) // 2] * 1e6, took[int(len(took) * 0.99)] * 1e6


def load(load_name: str, url: str, duration: float, body: Path, script: Path) -> tuple[int, float, float]:
    """One run of ``load_name`` (one of ``LOADS``): requests, p50 and p99 (us)."""
    if load_name == "python":
        return python_client(url, duration, body.read_bytes())
    result: WrkResult = run_wrk(url, int(load_name.split()[0]), duration, body, script)
    if result.errors:
        raise SystemExit(f"{url}: {result.error_text()}")
    return result.requests, result.p50_us, result.p99_us


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=4)
    args = parser.parse_args()
    ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="inferd-shadow-bench-"))
    port = free_port()
    env = dict(os.environ, INFERD_HOME=str(work / "home"), INFERD_PORT=str(port))
    body = work / "sample.json"
    shutil.copy(ROOT / "examples" / "iris-onnx" / "sample.json", body)
    script = ROOT / "bench" / "post.lua"
    names = ["plain", "shadowed", "busy"]
    p50: dict[tuple[str, str], list[float]] = {}
    p99: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}  # the operator's (gateway's) CPU us per request
    try:
        for name in names[:2]:
            subprocess.run(
                [INFERD, "deploy", str(project(work, name, name == "shadowed"))], env=env, check=True
            )
        wait_ready(f"http://127.0.0.1:{port}")
        operator = int(json.loads((work / "home" / "operator.json").read_text())["pid"])
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                url = f"http://127.0.0.1:{port}/{'plain' if name == 'busy' else name}/classifier"
                busy = None
                if name == "busy":
                    busy = subprocess.Popen(
                        [sys.executable, "-c", BUSY], preexec_fn=idle_priority, start_new_session=True
                    )
                for load_name in LOADS:
                    load(load_name, url, 1, body, script)  # warm up
                    before = read_stat(operator)
                    requests, median, tail = load(load_name, url, args.duration, body, script)
                    after = read_stat(operator)
                    if before is not None and after is not None:
                        used = (after.cpu_seconds - before.cpu_seconds) / requests * 1e6
                        cpu.setdefault((name, load_name), []).append(used)
                    p50.setdefault((name, load_name), []).append(median)
                    p99.setdefault((name, load_name), []).append(tail)
                if busy is not None:
                    busy.kill()
                    busy.wait()
        shadow = json.loads(
            subprocess.run(
                [INFERD, "get", "shadowed/classifier", "-o", "json"], env=env, check=True, capture_output=True
            ).stdout
        )[0]["shadow"]
        counts = f"{shadow['sent']} sent, {shadow['dropped']} dropped, {shadow['answered']} answered"
        print(f"shadow copies: {counts}")
    finally:
        subprocess.run([INFERD, "down"], env=env, check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    for load_name in LOADS:
        base = statistics.median(p50[("plain", load_name)])
        shadowed = statistics.median(p50[("shadowed", load_name)])
        for name in names:
            rounds = ", ".join(f"{v:.0f}" for v in p50[(name, load_name)])
            middle = statistics.median(p50[(name, load_name)])
            gateway = statistics.median(cpu[(name, load_name)])
            tail = statistics.median(p99[(name, load_name)])
            print(
                f"{load_name}, {name:8s} p50 median {middle:6.0f} us (rounds {rounds}); "
                f"p99 median {tail:6.0f} us; gateway CPU {gateway:.1f} us per request"
            )
        busy_p50 = statistics.median(p50[("busy", load_name)])
        tails = [statistics.median(p99[(name, load_name)]) for name in names]
        print(f"{load_name}: shadow p50 / no-shadow p50 = {shadowed / base:.3f}")
        print(f"{load_name}: shadow p99 / no-shadow p99 = {tails[1] / tails[0]:.3f}")
        print(f"{load_name}: busy p50 / no-shadow p50 = {busy_p50 / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
