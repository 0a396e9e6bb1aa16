"""`make soak`: mixed traffic over several APIs with faults injected, then a report.

Runs a private operator (its own INFERD_HOME and port), deploys three APIs, and for DURATION
seconds sends Cortex-style, V2 and TF Serving requests from several clients, with some bad
requests, while it kills replicas with SIGKILL and rolls out handler updates. It reports requests,
failures by cause, the operator's RSS and open file descriptors over time, and exits non-zero
when a request failed for a reason the faults do not explain.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from inferd.cli.inspect import resolve
from inferd.client import Client
from inferd.engine.state import rss_bytes

ROOT = Path(__file__).resolve().parent.parent
INFERD = str(Path(sys.executable).parent / "inferd")
SAMPLE = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}


def free_port() -> int:
    """A port free now, for the operator to bind later: below the kernel's ephemeral range, where
    the ``--port 0`` servers and outgoing connections of other programs cannot take it first."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low > 10000:
        pick = random.SystemRandom()
        for _ in range(100):
            port = pick.randrange(low - 10000, low)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


class Soak:
    def __init__(self, work: Path, duration: float, clients: int) -> None:
        self.work = work
        self.duration = duration
        self.clients = clients
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, INFERD_HOME=str(work / "home"), INFERD_PORT=str(self.port))
        self.outcomes: Counter[str] = Counter()
        self.kills = 0
        self.updates = 0
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([INFERD, *args], env=self.env, capture_output=True, text=True, check=True)

    def ready_pids(self, name: str) -> list[int]:
        """The pids of an API's ready replicas, asked in this process: a CLI per look cost a
        CPU-second (seconds on a busy machine), which the faults waited out between them."""
        client = Client(self.work / "home")
        try:
            info = client.api(resolve(client, name))
        finally:
            client.close()
        return [int(replica["pid"]) for replica in info["replicas"] if replica["state"] == "ready"]

    def setup(self) -> Path:
        project = self.work / "project"
        shutil.copytree(ROOT / "examples" / "iris-onnx", project)
        text = (project / "cortex.yaml").read_text()
        text += (
            "  compute:\n    init_replicas: 2\n    max_replicas: 2\n"
            "- kind: api\n  name: raw\n  onnx:\n    model: models/iris.onnx\n"
            "- kind: api\n  name: batched\n  onnx:\n    model: models/iris.onnx\n"
            "    request_handler: handlers/iris.py\n"
            "  batching:\n    max_batch_size: 8\n"
        )
        (project / "cortex.yaml").write_text(text)
        self.cli("deploy", str(project))
        return project

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while not self.stop.is_set():
            choice = rng.random()
            expect_ok = True
            if choice < 0.35:
                url, body = f"{self.url}/iris/classifier", json.dumps(SAMPLE)
            elif choice < 0.55:
                url, body = f"{self.url}/iris/batched", json.dumps(SAMPLE)
            elif choice < 0.75:
                url = f"{self.url}/v2/models/raw/infer"
                body = json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "input",
                                "shape": [1, 4],
                                "datatype": "FP32",
                                "data": [5.2, 3.6, 1.4, 0.3],
                            }
                        ]
                    }
                )
            elif choice < 0.9:
                url, body = (
                    f"{self.url}/v1/models/raw:predict",
                    json.dumps({"instances": [[5.2, 3.6, 1.4, 0.3]]}),
                )
            else:
                url, body, expect_ok = f"{self.url}/iris/classifier", "{not json", False
            try:
                response = session.post(url, data=body, timeout=30)
                code = response.status_code
                if expect_ok and code == 200:
                    outcome = "ok"
                elif not expect_ok and code == 400:
                    outcome = "bad request refused (400, expected)"
                elif code == 503 and "stopped before answering" in response.text:
                    outcome = "in flight on a killed replica (503)"
                else:
                    outcome = f"unexpected {code}: {response.text[:80]}"
            except requests.RequestException as exc:
                outcome = f"unexpected {type(exc).__name__}"
            with self.lock:
                self.outcomes[outcome] += 1

    def kills_loop(self) -> None:
        """A replica killed every 5 s (the first after 3 s); tried again soon when none is ready."""
        rng = random.Random(7)
        next_kill = time.monotonic() + 3
        while not self.stop.wait(0.5):
            now = time.monotonic()
            if now < next_kill:
                continue
            ready = self.ready_pids(rng.choice(["classifier", "raw", "batched"]))
            if ready:
                try:
                    os.kill(rng.choice(ready), signal.SIGKILL)
                    self.kills += 1
                    next_kill = now + 5
                except ProcessLookupError:
                    pass  # it exited between the listing and the kill (a rollout retired it)

    def updates_loop(self, project: Path) -> None:
        """A rolling update every 11 s (the first after 7 s). Its own thread: a deploy took up to
        10 s on a busy machine, which held the kills back when one thread did both."""
        handler = project / "handlers" / "iris.py"
        original = handler.read_text()
        next_update = time.monotonic() + 7
        while not self.stop.wait(0.5):
            now = time.monotonic()
            if now >= next_update:
                self.updates += 1
                handler.write_text(original + f"\n# update {self.updates}\n")
                self.cli("deploy", str(project), "--no-wait")
                next_update = now + 11

    def watch(self) -> None:
        pid = int(json.loads((self.work / "home" / "operator.json").read_text())["pid"])
        started = time.monotonic()
        while not self.stop.wait(2):
            self.samples.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "operator_rss_mib": round(rss_bytes(pid) / 2**20, 1),
                    "replicas_rss_mib": round(sum(rss_bytes(child) for child in _children(pid)) / 2**20, 1),
                    "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
                }
            )

    def run(self) -> int:
        project = self.setup()
        threads = [threading.Thread(target=self.client, args=(i,)) for i in range(self.clients)]
        threads += [
            threading.Thread(target=self.kills_loop),
            threading.Thread(target=self.updates_loop, args=(project,)),
            threading.Thread(target=self.watch),
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(self.duration)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
            self.cli("down")
        return self.report()

    def report(self) -> int:
        total = sum(self.outcomes.values())
        print(
            f"soak: {self.duration:.0f}s, {self.clients} clients, {total} requests, "
            f"{self.kills} replicas killed, {self.updates} rolling updates"
        )
        for outcome, count in self.outcomes.most_common():
            print(f"  {count:8d}  {outcome}")
        print("  t(s)  operator RSS (MiB)  replicas RSS (MiB)  operator fds")
        for sample in self.samples[:: max(1, len(self.samples) // 12)]:
            print(
                f"  {sample['t']:5.0f}  {sample['operator_rss_mib']:18.1f}"
                f"  {sample['replicas_rss_mib']:18.1f}  {sample['open_fds']:12d}"
            )
        unexpected = sum(
            count for outcome, count in self.outcomes.items() if outcome.startswith("unexpected")
        )
        killed = self.outcomes["in flight on a killed replica (503)"]
        problems = []
        if unexpected:
            problems.append(f"{unexpected} requests failed unexpectedly")
        if killed > self.kills * 8:  # each kill loses at most what that replica had in flight
            problems.append(f"{killed} requests lost to {self.kills} kills")
        if len(self.samples) >= 4:
            first, last = self.samples[1], self.samples[-1]
            if last["open_fds"] > first["open_fds"] + 20:
                problems.append(f"open file descriptors grew from {first['open_fds']} to {last['open_fds']}")
            if last["operator_rss_mib"] > 2 * first["operator_rss_mib"] + 20:
                problems.append("the operator's memory more than doubled")
        report = {
            "requests": total,
            "outcomes": dict(self.outcomes),
            "kills": self.kills,
            "updates": self.updates,
            "samples": self.samples,
            "problems": problems,
        }
        (self.work / "soak.json").write_text(json.dumps(report, indent=2))
        for problem in problems:
            print(f"soak: FAILED: {problem}")
        return 1 if problems else 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("SOAK_SECONDS", "600")),
        help="seconds of traffic (default 600, or $SOAK_SECONDS)",
    )
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the run (default: a temporary one)"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="inferd-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"soak: working in {work}")
    return Soak(work, args.duration, args.clients).run()


if __name__ == "__main__":
    sys.exit(main())
