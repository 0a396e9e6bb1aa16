"""Start-up and deploy timings (part of `make bench`).

- `inferd serve EXAMPLE` until GET /healthz answers 200, for the three examples (3 runs each);
- `inferd deploy --no-wait` of examples/iris-onnx until the first 200 (operator already up, and
  operator not running), with a private INFERD_HOME;
- a rolling update (a changed handler) under 4 clients: time until the old replica is retired,
  and the requests that failed during it;
- the second replica of the ONNX and TensorFlow examples (what autoscaling and scale-from-zero
  start): time from "replica wanted" (the engine's count raised) to "replica ready" (its READY
  frame), forked by the runtime's zygote and spawned the plain way (``INFERD_ZYGOTE=0``),
  beside the time the model alone takes to load in a process that already did the imports.
  ``python bench/startup.py --second`` runs only this part (``--doc``: and adds its section to
  docs/benchmarks.md, as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import free_port  # noqa: E402
from inferd.replica.handle import ReplicaHandle  # noqa: E402

INFERD = str(Path(sys.executable).parent / "inferd")
SAMPLE = (ROOT / "examples" / "iris-onnx" / "sample.json").read_bytes()


def until_ok(request: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request():  # type: ignore[operator]
                return
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise SystemExit("timed out")


def serve_to_healthy(example: str) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="inferd-serve-") as home:  # not the user's ~/.inferd
        started = time.monotonic()
        process = subprocess.Popen(
            [INFERD, "serve", str(ROOT / "examples" / example), "--port", str(port)],
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, INFERD_HOME=home),
        )
        try:
            until_ok(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200)
            return time.monotonic() - started
        finally:
            process.terminate()
            process.wait()


LOAD_ONLY = """
import sys, time
from pathlib import Path
import inferd.replica.worker
from inferd.config.load import load_project
from inferd.handler.predictor import Predictor
from inferd.storage import local_model_path
import {module}
root = Path(sys.argv[1])
api = load_project(root).apis[0].api
started = time.perf_counter()
Predictor(api, root, local_model_path(api.model_uri, root) if api.model_uri else None)
print(time.perf_counter() - started)
"""


class ReadySink:
    """The engine's gateway side, reduced to counting ready replicas."""

    def __init__(self) -> None:
        self.ready = 0
        self.cpu = 0.0  # CPU seconds the last ready replica used from its start to READY

    def replica_ready(self, api: str, handle: ReplicaHandle) -> None:
        self.ready += 1
        self.cpu = cpu_seconds(int(handle.info["pid"]))

    def in_flight(self, api: str) -> int:
        return 0

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (a forked child's starts at zero)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def second_replica(example: str, zygote: bool) -> tuple[float, float]:
    """Wall and CPU seconds from wanting a second replica to its being ready (the first is)."""
    from inferd.config.load import load_project
    from inferd.engine.local import LocalEngine

    os.environ["INFERD_ZYGOTE"] = "1" if zygote else "0"
    sink = ReadySink()
    with tempfile.TemporaryDirectory(prefix="inferd-second-") as home:
        engine = LocalEngine(sink, home=Path(home), fixed_replicas=1)  # type: ignore[arg-type]
        try:
            project = load_project(ROOT / "examples" / example)
            await engine.apply(project)

            async def until(condition: object) -> None:
                deadline = time.monotonic() + 300
                while not condition():  # type: ignore[operator]
                    if time.monotonic() > deadline:
                        raise SystemExit("timed out")
                    await asyncio.sleep(0.002)

            await until(lambda: sink.ready == 1)
            if zygote:
                zygotes = engine.zygotes
                assert zygotes is not None
                fmt = project.apis[0].api.model_format
                await until(lambda: fmt in zygotes.by_runtime and zygotes.by_runtime[fmt].usable())
            await asyncio.sleep(1)  # let the first replica and the zygote settle
            engine.fixed_replicas = 2
            started = time.monotonic()
            engine.reconcile()
            await until(lambda: sink.ready == 2)
            return time.monotonic() - started, sink.cpu
        finally:
            await engine.stop()
            os.environ.pop("INFERD_ZYGOTE", None)


def model_load(example: str, module: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ONLY.format(module=module), str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.split()[-1])


def second_replicas(runs: int = 3, doc: Path | None = None) -> None:
    """Time the second replica of each example, forked and spawned; add a section to ``doc``."""
    runs = int(os.environ.get("INFERD_BENCH_RUNS", runs))
    rows = []
    for example, module in (("iris-onnx", "onnxruntime"), ("iris-tensorflow", "tensorflow")):
        forked = [asyncio.run(second_replica(example, True)) for _ in range(runs)]
        spawned = [asyncio.run(second_replica(example, False)) for _ in range(runs)]
        load = statistics.median(model_load(example, module) for _ in range(runs))
        row = (
            example,
            statistics.median(w for w, _ in forked),
            statistics.median(c for _, c in forked),
            statistics.median(w for w, _ in spawned),
            statistics.median(c for _, c in spawned),
            load,
        )
        rows.append(row)
        print(
            f"second replica of examples/{example}, wanted -> ready (median of {runs}): forked by "
            f"the zygote {row[1]:.3f} s wall, {row[2]:.3f} s CPU of the replica; spawned "
            f"{row[3]:.2f} s wall, {row[4]:.2f} s CPU; the model's load alone {load:.3f} s wall"
        )
    if doc is not None and doc.exists():
        with doc.open("a", encoding="utf-8") as out:
            out.write(second_replica_section(rows, runs, os.getloadavg()[0]))


def second_replica_section(
    rows: list[tuple[str, float, float, float, float, float]], runs: int, load: float
) -> str:
    lines = [
        "\n## Cost per replica: start time (`python bench/startup.py --second`)\n\n",
        "The second replica of an example (the first one ready): from the engine's count raised to "
        "the replica's READY frame, forked by the runtime's zygote and spawned as a fresh process "
        f"(`INFERD_ZYGOTE=0`), median of {runs} runs; CPU is the new replica's own user + system "
        "time from /proc/PID/stat at READY (a fork's starts at zero), which the machine's load "
        f"(load average {load:.1f} at the end of this run) does not inflate as it does wall time. "
        "The model's load: `Predictor(...)` timed in a process that already did the imports.\n\n",
        "| example | forked: wall | forked: CPU | spawned: wall | spawned: CPU | model load alone |\n",
        "| --- | ---: | ---: | ---: | ---: | ---: |\n",
    ]
    for example, fw, fc, sw, sc, load_s in rows:
        lines.append(f"| {example} | {fw:.3f} s | {fc:.3f} s | {sw:.2f} s | {sc:.2f} s | {load_s:.3f} s |\n")
    return "".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--second", action="store_true", help="only the second replica's start")
    parser.add_argument(
        "--doc", action="store_true", help="with --second: add its section to docs/benchmarks.md"
    )
    args = parser.parse_args()  # --help, or an option it does not know, runs nothing
    doc = ROOT / "docs" / "benchmarks.md"
    if args.second:
        second_replicas(doc=doc if args.doc else None)
        return 0
    for example in ("iris-onnx", "iris-tensorflow", "iris-predictor"):
        runs = [serve_to_healthy(example) for _ in range(3)]
        print(
            f"inferd serve examples/{example} -> /healthz 200: median {statistics.median(runs):.2f} s "
            f"(runs {', '.join(f'{r:.2f}' for r in runs)})"
        )
    work = Path(tempfile.mkdtemp(prefix="inferd-startup-"))
    atexit.register(shutil.rmtree, work, True)  # the operator's home and the project: left in /tmp before
    port = free_port()
    env = dict(os.environ, INFERD_HOME=str(work / "home"), INFERD_PORT=str(port))
    url = f"http://127.0.0.1:{port}/iris/classifier"
    project = work / "iris"
    shutil.copytree(ROOT / "examples" / "iris-onnx", project)

    def cli(*args: str) -> str:
        return subprocess.run([INFERD, *args], env=env, capture_output=True, text=True, check=True).stdout

    def deploy_to_ok() -> float:
        started = time.monotonic()
        cli("deploy", str(project), "--no-wait")
        until_ok(lambda: requests.post(url, data=SAMPLE, timeout=5).status_code == 200)
        return time.monotonic() - started

    try:
        cold = deploy_to_ok()
        cli("delete", "iris")
        warm = deploy_to_ok()
        print(
            f"inferd deploy examples/iris-onnx -> first 200: {warm:.2f} s with the operator up, "
            f"{cold:.2f} s when deploy starts it"
        )
        counts = {"ok": 0, "failed": 0}
        stop = threading.Event()

        def client() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    answer = session.post(url, data=SAMPLE, timeout=30)
                    counts["ok" if answer.status_code == 200 else "failed"] += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        handler = project / "handlers" / "iris.py"
        handler.write_text(
            handler.read_text().replace("labels[predicted_class_id]", "labels[predicted_class_id].upper()")
        )
        started = time.monotonic()
        cli("deploy", str(project), "--no-wait")
        while True:
            api = json.loads(cli("get", "classifier", "-o", "json"))[0]
            if api["up_to_date"] >= 1 and not api["stale"]:
                break
            time.sleep(0.02)
        rolled = time.monotonic() - started
        time.sleep(1)
        stop.set()
        for thread in threads:
            thread.join()
        print(
            f"rolling update (deploy -> old replica retired): {rolled:.2f} s; 4 clients meanwhile: "
            f"{counts['ok']} ok, {counts['failed']} failed"
        )
    finally:
        subprocess.run([INFERD, "down"], env=env, capture_output=True)
    second_replicas(doc=doc)  # `make bench` wrote the file just before: add the section
    return 0


if __name__ == "__main__":
    sys.exit(main())
