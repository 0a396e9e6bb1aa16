"""Attack `inferd serve` the way a hostile or careless client would, and measure what holds.

Starts its own `inferd serve` on a free loopback port (never another host), runs each attack
with a time bound, and prints one line per attack with what was measured (the figures in
docs/reliability.md come from here). Exits 1 when an attack got an answer it should not have.

    python scripts/attack.py                      # every attack on examples/iris-onnx
    python scripts/attack.py --only headers,pipeline
    python scripts/attack.py --only cap-churn -- --header-timeout 600
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferd.engine.state import rss_bytes

ROOT = Path(__file__).resolve().parent.parent
INFERD = str(Path(sys.executable).parent / "inferd")
HOST = "127.0.0.1"
ENDPOINT = "/iris/classifier"
SAMPLE = json.dumps(
    {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
).encode()
MiB = 1024 * 1024


class Target:
    """One `inferd serve` process on a free loopback port."""

    def __init__(self, project: Path, log: Path, *args: str) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [INFERD, "serve", str(project), "--host", HOST, "--port", "0", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        self.port = 0
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(r"on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
            if found and self.status("/healthz") == 200:
                self.port = int(found.group(1))
                break
            if found:
                self.port = int(found.group(1))
            time.sleep(0.1)
        if self.status("/healthz") != 200:
            self.stop()
            raise SystemExit(f"inferd serve did not become ready:\n{log.read_text(errors='replace')}")

    def status(self, path: str) -> int:
        if not self.port:
            return 0
        try:
            return request(self.port, "GET", path)[0]
        except OSError:
            return 0

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, float]:
    """Send ``data`` on a new connection; the status of the first answer and the seconds it took."""
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the server may stop reading once it has answered
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    elapsed = time.monotonic() - started
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0
    return status, elapsed


Result = dict[str, Any]


def big_headers(target: Target) -> Result:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(1024))  # ~1 MiB
    data = b"POST " + ENDPOINT.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    status, seconds = raw(target.port, data)
    return {"ok": status == 431, "status": status, "seconds": round(seconds, 3)}


def huge_length(target: Target) -> Result:
    data = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n" % ENDPOINT.encode()
    status, seconds = raw(target.port, data)
    return {"ok": status == 413, "status": status, "seconds": round(seconds, 3)}


class Client(threading.Thread):
    """A well-behaved client: one keep-alive connection, one request after another."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.times: list[float] = []
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("POST", ENDPOINT, body=SAMPLE, headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            except OSError:
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            self.latencies.append(time.perf_counter() - started)
            self.times.append(started)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            time.sleep(0.005)
        conn.close()

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return round(1000 * ordered[int(len(ordered) * 0.99)] if ordered else 0.0, 1)


def half_sent(target: Target, count: int = 3000, bound: float = 40) -> Result:
    """``count`` connections send half a request line and wait; a good client runs meanwhile."""
    client = Client(target.port)
    client.start()
    attackers: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection((HOST, target.port), timeout=10)
        sock.sendall(b"POST " + ENDPOINT.encode() + b" HTT")
        sock.setblocking(False)
        attackers.append(sock)
    started = time.monotonic()
    open_ = set(attackers)
    while open_ and time.monotonic() - started < bound:
        for sock in list(open_):
            try:
                if sock.recv(4096) == b"":
                    open_.discard(sock)
            except BlockingIOError:
                pass
            except OSError:
                open_.discard(sock)
        time.sleep(0.2)
    closed_after = time.monotonic() - started
    for sock in attackers:
        sock.close()
    client.stop.set()
    client.join()
    good = client.statuses.get(200, 0)
    ok = not open_ and good == sum(client.statuses.values()) and client.p99_ms() < 50
    return {
        "ok": ok,
        "connections": count,
        "closed_by_server": count - len(open_),
        "all_closed_after_s": round(closed_after, 1),
        "good_client_requests": good,
        "good_client_other": {k: v for k, v in client.statuses.items() if k != 200},
        "good_client_p99_ms": client.p99_ms(),
    }


def pipeline(target: Target, count: int = 300_000, bound: float = 60) -> Result:
    """``count`` pipelined POSTs on one connection, never reading the answers."""
    one = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        ENDPOINT.encode(),
        len(SAMPLE),
        SAMPLE,
    )
    before = target.rss()
    sock = socket.create_connection((HOST, target.port))
    sock.setblocking(False)
    data = memoryview(one * count)
    sent = 0
    peak = before
    started = time.monotonic()
    others: dict[int, int] = {}
    last_check = 0.0
    while sent < len(data) and time.monotonic() - started < bound:
        try:
            sent += sock.send(data[sent : sent + (1 << 20)])
        except BlockingIOError:
            time.sleep(0.01)
        now = time.monotonic()
        if now - last_check > 0.5:
            last_check = now
            peak = max(peak, target.rss())
            try:
                status = request(target.port, "POST", ENDPOINT, SAMPLE, timeout=5)[0]
            except OSError:
                status = 0
            others[status] = others.get(status, 0) + 1
    peak = max(peak, target.rss())
    sock.close()
    grown = (peak - before) / MiB
    ok = grown < 64 and set(others) == {200}
    return {
        "ok": ok,
        "requests_written": sent // len(one),
        "rss_before_mib": round(before / MiB, 1),
        "rss_growth_mib": round(grown, 1),
        "other_clients": others,
    }


def cap_churn(target: Target, count: int = 10_000, clients: int = 200) -> Result:
    """The connection cap (``--max-connections``, 10,000) filled with half-sent requests, none
    idle; then, ``clients`` times, the oldest leaves and a new client asks ``/healthz`` and stays
    busy too, so that each new client is accepted at the cap (where an idle one is looked for).
    Run it with ``-- --header-timeout 600``, or the sweep closes the attackers after 10 s."""
    held: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection((HOST, target.port), timeout=30)
        sock.sendall(b"POST " + ENDPOINT.encode() + b" HTT")
        held.append(sock)
    time.sleep(3)  # every attacker accepted, the listener paused at the cap
    seconds: list[float] = []
    try:
        for _ in range(clients):
            held.pop(0).close()
            started = time.monotonic()
            sock = socket.create_connection((HOST, target.port), timeout=30)
            held.append(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
            seconds.append(time.monotonic() - started)
            sock.sendall(b"POST " + ENDPOINT.encode() + b" HTT")  # busy from now on, as the rest
    finally:
        for sock in held:
            sock.close()
    seconds.sort()
    median_ms = seconds[len(seconds) // 2] * 1000
    return {
        "ok": median_ms < 20,
        "clients": clients,
        "median_ms": round(median_ms, 1),
        "p90_ms": round(seconds[int(len(seconds) * 0.9)] * 1000, 1),
        "total_s": round(sum(seconds), 2),
    }


ATTACKS: dict[str, Callable[[Target], Result]] = {
    "headers": big_headers,
    "length": huge_length,
    "half-sent": half_sent,
    "pipeline": pipeline,
    "cap-churn": cap_churn,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=Path, default=ROOT / "examples" / "iris-onnx")
    parser.add_argument("--only", default="", help="comma-separated attacks: " + ", ".join(ATTACKS))
    parser.add_argument("serve_args", nargs="*", help="extra `inferd serve` flags (after --)")
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name] or list(ATTACKS)
    unknown = [name for name in chosen if name not in ATTACKS]
    if unknown:
        parser.error(f"no attack named {unknown[0]!r} (attacks: {', '.join(ATTACKS)})")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacks open thousands of sockets
    failed = 0
    with tempfile.TemporaryDirectory(prefix="inferd-attack-") as folder:
        os.environ["INFERD_HOME"] = str(Path(folder) / "home")
        target = Target(args.project, Path(folder) / "serve.log", *args.serve_args)
        try:
            for name in chosen:
                result = ATTACKS[name](target)
                failed += not result["ok"]
                print(f"{name}: {json.dumps(result)}", flush=True)
        finally:
            target.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
