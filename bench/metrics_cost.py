"""What metrics cost: `inferd serve` with and without `--no-metrics`, in one run (part of `make bench`).

Serves examples/iris-onnx with 2 replicas twice, loads each with wrk at 32 connections, and
reads the gateway's CPU time per request from /proc (less sensitive to the machine's noise than
requests/s). Rounds alternate which server goes first, because the order alone moved the
numbers by a few percent here. Prints both and the difference.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import free_port  # noqa: E402

INFERD = str(Path(sys.executable).parent / "inferd")
LUA = """wrk.method = "POST"
wrk.body = '{"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}'
wrk.headers["Content-Type"] = "application/json"
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, lua: Path) -> tuple[float, int]:
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"errors while measuring {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferd-metrics-cost-"))
    atexit.register(shutil.rmtree, work, True)  # the servers' homes and the project: left in /tmp before
    project = work / "iris"
    shutil.copytree(ROOT / "examples" / "iris-onnx", project)
    with (project / "cortex.yaml").open("a") as config:
        config.write("  compute:\n    init_replicas: 2\n    max_replicas: 2\n")
    lua = work / "post.lua"
    lua.write_text(LUA)
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    for name, extra in (("metrics on", []), ("metrics off", ["--no-metrics"])):
        port = free_port()
        process = subprocess.Popen(
            [INFERD, "serve", str(project), "--port", str(port), *extra],
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, INFERD_HOME=str(work / f"home-{len(servers)}")),  # not the user's
        )
        servers[name] = (process, f"http://127.0.0.1:{port}")
    try:
        for _, url in servers.values():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.1)
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        rps: dict[str, list[float]] = {name: [] for name in servers}
        names = list(servers)
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                process, url = servers[name]
                wrk(f"{url}/iris/classifier", 1, lua)
                before = cpu_seconds(process.pid)
                measured, total = wrk(f"{url}/iris/classifier", args.duration, lua)
                cpu[name].append((cpu_seconds(process.pid) - before) / total * 1e6)
                rps[name].append(measured)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    on, off = statistics.median(cpu["metrics on"]), statistics.median(cpu["metrics off"])
    for name in servers:
        print(
            f"{name:12s} gateway CPU per request: median {statistics.median(cpu[name]):5.1f} us "
            f"(rounds {', '.join(f'{v:.1f}' for v in cpu[name])}); "
            f"req/s median {statistics.median(rps[name]):,.0f}"
        )
    print(
        f"metrics cost {on - off:.1f} us of gateway CPU per request "
        f"({100 * (on - off) / off:.1f}% of the gateway)"
    )
    rps_on, rps_off = statistics.median(rps["metrics on"]), statistics.median(rps["metrics off"])
    throughput_cost = 100 * (rps_off - rps_on) / rps_off
    print(f"metrics cost {throughput_cost:.1f}% of requests/s ({rps_on:,.0f} vs {rps_off:,.0f})")
    doc = ROOT / "docs" / "benchmarks.md"
    if doc.exists():  # `make bench` wrote it just before: add this section
        with doc.open("a", encoding="utf-8") as out_doc:
            out_doc.write(
                "\n## What metrics cost (`python bench/metrics_cost.py`)\n\n"
                "`inferd serve` (2 replicas) with and without `--no-metrics`, wrk at 32 connections, "
                f"{args.rounds} rounds alternating which goes first; gateway CPU per request from /proc.\n\n"
                f"| metrics | gateway CPU per request (median) | req/s (median) |\n| --- | ---: | ---: |\n"
                f"| on | {on:.1f} us | {statistics.median(rps['metrics on']):,.0f} |\n"
                f"| off | {off:.1f} us | {statistics.median(rps['metrics off']):,.0f} |\n\n"
                f"Metrics cost **{on - off:.1f} us** of gateway CPU per request "
                f"({100 * (on - off) / off:.1f}% of the gateway's CPU) and **{throughput_cost:.1f}%** of "
                "requests/s (bar < 5% of throughput).\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
