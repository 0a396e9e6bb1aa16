"""Start-up and deploy timings (part of `make bench`).

- `inferd serve EXAMPLE` until GET /healthz answers 200, for the three examples (3 runs each);
- `inferd deploy --no-wait` of examples/iris-onnx until the first 200 (operator already up, and
  operator not running), with a private INFERD_HOME;
- a rolling update (a changed handler) under 4 clients: time until the old replica is retired,
  and the requests that failed during it.
"""

from __future__ import annotations

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
    started = time.monotonic()
    process = subprocess.Popen(
        [INFERD, "serve", str(ROOT / "examples" / example), "--port", str(port)], stderr=subprocess.DEVNULL
    )
    try:
        until_ok(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait()


def main() -> int:
    for example in ("iris-onnx", "iris-tensorflow", "iris-predictor"):
        runs = [serve_to_healthy(example) for _ in range(3)]
        print(
            f"inferd serve examples/{example} -> /healthz 200: median {statistics.median(runs):.2f} s "
            f"(runs {', '.join(f'{r:.2f}' for r in runs)})"
        )
    work = Path(tempfile.mkdtemp(prefix="inferd-startup-"))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
