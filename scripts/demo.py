"""`make demo`: serve examples/iris-onnx, send one prediction, print it, keep serving until Ctrl-C.

It listens on 127.0.0.1:8888; INFERD_HOST and INFERD_PORT choose another address
(`INFERD_PORT=9000 make demo`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "iris-onnx"
HOST = os.environ.get("INFERD_HOST", "127.0.0.1")
PORT = int(os.environ.get("INFERD_PORT", "8888"))
BASE = f"http://{HOST}:{PORT}"


def check_port_free() -> None:
    """Refuse a port something else listens on, before starting: its /healthz (another inferd's,
    say an operator's gateway from `inferd up`) would answer for a server that never started."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, PORT))
        except OSError as exc:
            sys.exit(
                f"demo: cannot listen on {HOST}:{PORT}: {exc.strerror}; "
                f"choose another port: INFERD_PORT=9000 make demo"
            )


def wait_ready(server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"demo: inferd serve exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{BASE}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    server.send_signal(signal.SIGINT)
    sys.exit("demo: the API did not become ready within a minute")


class Stopped(Exception):
    """The demo itself was told to stop (SIGTERM, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    check_port_free()
    inferd = Path(sys.executable).parent / "inferd"
    server = subprocess.Popen([str(inferd), "serve", str(EXAMPLE), "--host", HOST, "--port", str(PORT)])
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        wait_ready(server)
        sample = (EXAMPLE / "sample.json").read_bytes()
        request = urllib.request.Request(
            f"{BASE}/iris/classifier", data=sample, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        print()
        print(f"sample.json: {json.dumps(json.loads(sample))}")
        print(f"prediction:  {json.dumps(answer)}")
        print()
        print("Try it yourself:")
        print(
            f"  curl -X POST -H 'Content-Type: application/json' -d @{EXAMPLE.relative_to(ROOT)}/sample.json "
            f"{BASE}/iris/classifier"
        )
        print("Serving until Ctrl-C.")
        server.wait()
    except KeyboardInterrupt:
        # From a terminal inferd heard Ctrl-C as well, and ignores this second one; a `kill -INT`
        # of the demo alone reached only the demo, which would wait for a server never told.
        server.send_signal(signal.SIGINT)
        server.wait()
    except Stopped as stopped:
        # `kill PID` of the demo alone: its inferd serve would outlive it, holding the port.
        server.send_signal(stopped.signum)
        server.wait()
    sys.exit(server.returncode)


if __name__ == "__main__":
    main()
