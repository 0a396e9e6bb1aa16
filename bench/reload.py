"""`inferd serve --reload`: seconds from saving the handler to the new answer, under a steady client.

    python bench/reload.py [--edits 5] [--clients 1]

Serves a copy of examples/iris-onnx with --reload, keeps `--clients` threads posting the sample
back to back, edits the handler's labels `--edits` times (one edit every 3 s once the previous
one answers), and prints each edit's time to the first new answer, the reload times the server
printed, and the requests that failed (the bar: none).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(shutil.copytree(ROOT / "examples" / "iris-onnx", Path(scratch) / "iris"))
        log_path = Path(scratch) / "serve.log"
        port = free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [INFERD, "serve", str(project), "--reload", "--port", str(port)],
                stderr=log,
                stdout=log,
                env=dict(os.environ, INFERD_HOME=str(Path(scratch) / "home")),  # not the user's
            )
        try:
            run(project, f"http://127.0.0.1:{port}/iris/classifier", log_path, args.edits, args.clients)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)


def run(project: Path, url: str, log_path: Path, edits: int, clients: int) -> None:
    sample = (project / "sample.json").read_bytes()
    deadline = time.monotonic() + 120
    while "watching" not in log_path.read_text() or "is live" not in log_path.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"inferd serve did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    latest: dict[str, float] = {}
    failed: list[str] = []
    answered = [0]
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            session.trust_env = False
            while not stop.is_set():
                try:
                    response = session.post(url, data=sample, timeout=30)
                except requests.RequestException as exc:
                    failed.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failed.append(f"{response.status_code} {response.text}")
                    continue
                answered[0] += 1
                latest.setdefault(response.json(), time.monotonic())

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    handler = project / "handlers" / "iris.py"
    previous = "iris-setosa"
    try:
        for edit in range(edits):
            time.sleep(3)
            label = f"setosa-{edit}"
            handler.write_text(handler.read_text().replace(f'"{previous}"', f'"{label}"'))
            saved = time.monotonic()
            while label not in latest:
                if time.monotonic() - saved > 120:
                    raise SystemExit(f"edit {edit} never answered:\n{log_path.read_text()}")
                time.sleep(0.005)
            print(f"edit {edit}: new answer {latest[label] - saved:.2f} s after the save", flush=True)
            previous = label
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    pattern = re.compile(r"reloaded classifier in (\d+\.\d) s")
    deadline = time.monotonic() + 10
    while len(pattern.findall(log_path.read_text())) < edits and time.monotonic() < deadline:
        time.sleep(0.05)  # the server says "reloaded" just after the new replica takes traffic
    printed = pattern.findall(log_path.read_text())
    print(f"reload times printed by the server: {', '.join(printed)} s")
    print(f"requests: {answered[0]} answered, {len(failed)} failed")
    for failure in failed[:5]:
        print(f"  {failure}")


if __name__ == "__main__":
    main()
