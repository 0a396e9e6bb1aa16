"""Adaptive batching on a ~2 ms model: batching off vs on, in one run (part of `make bench`).

Builds an ONNX MLP (1024 -> 4096 -> 4096 -> 10, random weights) whose single-row call takes about
2 ms on one thread here, serves it with `inferd serve` (exactly 1 replica) with and without
`batching: {max_batch_size: 32}`, and loads each with wrk at 1 and 32 connections, interleaved.
Prints requests/s, p50 and p95, and writes bench/results/batching.json.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import free_port  # noqa: E402

INFERD = str(Path(sys.executable).parent / "inferd")
LUA = """
local f = io.open(os.getenv("BATCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  io.write(string.format("P50 %d\\nP95 %d\\nP99 %d\\nREQUESTS %d\\nERRORS %d\\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


SIZES = (1024, 4096, 4096, 10)


def build_mlp(path: Path, sizes: tuple[int, ...] = SIZES) -> None:
    from onnx import TensorProto, helper, numpy_helper, save_model

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    previous = "x"
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        weight = numpy_helper.from_array(
            (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32), f"w{layer}"
        )
        bias = numpy_helper.from_array(np.zeros(n_out, dtype=np.float32), f"b{layer}")
        inits += [weight, bias]
        nodes.append(helper.make_node("MatMul", [previous, f"w{layer}"], [f"m{layer}"]))
        out = "y" if layer == len(sizes) - 2 else f"a{layer}"
        nodes.append(
            helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"z{layer}" if out != "y" else "y"])
        )
        if out != "y":
            nodes.append(helper.make_node("Relu", [f"z{layer}"], [out]))
        previous = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save_model(model, str(path))


def project(root: Path, model: Path, batching: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mlp.onnx").write_bytes(model.read_bytes())
    extra = "  batching:\n    max_batch_size: 32\n" if batching else ""
    (root / "cortex.yaml").write_text(
        "- kind: deployment\n  name: bench\n- kind: api\n  name: mlp\n  onnx:\n    model: mlp.onnx\n"
        # One replica each (no autoscaling), so the comparison is batching alone.
        f"  compute:\n    min_replicas: 1\n    max_replicas: 1\n  timeout: 120\n{extra}"
    )
    return root


def wrk(url: str, connections: int, seconds: float, lua: Path, body: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, BATCH_BODY=str(body)),
    ).stdout
    values = {
        key: float(value) for key, value in re.findall(r"^(P50|P95|P99|REQUESTS|ERRORS) (\d+)$", out, re.M)
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "p50_ms": values["P50"] / 1000,
        "p95_ms": values["P95"] / 1000,
        "p99_ms": values["P99"] / 1000,
        "errors": values["ERRORS"],
    }


def serve(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [INFERD, "serve", str(root), "--port", str(port)],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, INFERD_HOME=str(root.parent / f"home-{root.name}")),  # not the user's
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return process, f"{url}/bench/mlp"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("inferd serve did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferd-batching-"))
    atexit.register(shutil.rmtree, work, True)  # its 80 MB model and the servers' homes: left in /tmp before
    model = work / "mlp.onnx"
    build_mlp(model)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=options)
    row = np.random.default_rng(1).standard_normal((1, SIZES[0])).astype(np.float32)
    for _ in range(20):
        session.run(None, {"x": row})
    started = time.perf_counter()
    for _ in range(100):
        session.run(None, {"x": row})
    single_ms = (time.perf_counter() - started) * 10
    batch = np.repeat(row, 32, axis=0)
    started = time.perf_counter()
    for _ in range(20):
        session.run(None, {"x": batch})
    batch_ms = (time.perf_counter() - started) * 50
    print(f"model: {single_ms:.2f} ms per 1-row call, {batch_ms:.2f} ms per 32-row call (1 thread)")
    body = work / "body.json"
    body.write_text(json.dumps(row.tolist()))
    lua = work / "post.lua"
    lua.write_text(LUA)
    results: dict[str, dict[int, list[dict[str, float]]]] = {"off": {1: [], 32: []}, "on": {1: [], 32: []}}
    servers = {name: serve(project(work / name, model, name == "on")) for name in ("off", "on")}
    try:
        for _ in range(args.rounds):
            for connections in (1, 32):
                for name, (_, url) in servers.items():
                    wrk(url, connections, 1.0, lua, body)  # warm-up
                    results[name][connections].append(wrk(url, connections, args.duration, lua, body))
    finally:
        for process, _ in servers.values():
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
    best: dict[str, Any] = {
        name: {c: max(runs, key=lambda r: r["rps"]) for c, runs in by_c.items()}
        for name, by_c in results.items()
    }
    print(f"{'batching':9s} {'conns':>5s} {'req/s':>9s} {'p50 ms':>8s} {'p95 ms':>8s} {'errors':>7s}")
    for name in ("off", "on"):
        for c in (1, 32):
            r = best[name][c]
            print(
                f"{name:9s} {c:5d} {r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['errors']:7.0f}"
            )
    speedup = best["on"][32]["rps"] / best["off"][32]["rps"]
    p95 = best["on"][32]["p95_ms"] / best["off"][32]["p95_ms"]
    p50_idle = best["on"][1]["p50_ms"] / best["off"][1]["p50_ms"]
    print(
        f"batching on/off at 32 connections: {speedup:.2f}x requests/s (target >= 2.5x), p95 ratio {p95:.2f}"
        f" (target <= 1.0); at 1 connection p50 ratio {p50_idle:.2f} (target <= 1.1)"
    )
    doc = ROOT / "docs" / "benchmarks.md"
    if doc.exists():  # `make bench` wrote it just before: add this section
        rows = "\n".join(
            f"| {name} | {c} | {best[name][c]['rps']:,.0f} | {best[name][c]['p50_ms']:.2f} ms | "
            f"{best[name][c]['p95_ms']:.2f} ms | {best[name][c]['errors']:.0f} |"
            for name in ("off", "on")
            for c in (1, 32)
        )
        with doc.open("a", encoding="utf-8") as out_doc:
            out_doc.write(
                "\n## Adaptive batching (`python bench/batching.py`)\n\n"
                f"An ONNX MLP {' -> '.join(map(str, SIZES))} (random weights): "
                f"{single_ms:.2f} ms per 1-row call, "
                f"{batch_ms:.2f} ms per 32-row call on one thread. `inferd serve` with exactly 1 replica, "
                "without and with `batching: {max_batch_size: 32}`; wrk, best of "
                f"{args.rounds} rounds of {args.duration:g} s.\n\n"
                "| batching | connections | req/s | p50 | p95 | errors |\n"
                "| --- | ---: | ---: | ---: | ---: | ---: |\n"
                f"{rows}\n\n"
                f"Batching on/off at 32 connections: **{speedup:.2f}x** requests/s (bar >= 2.5x), p95 ratio "
                f"**{p95:.2f}** (bar <= 1.0); at 1 connection p50 ratio **{p50_idle:.2f}** (bar <= 1.1).\n"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "batching.json").write_text(
        json.dumps(
            {
                "model_ms_single": single_ms,
                "model_ms_batch32": batch_ms,
                "best": best,
                "speedup_32": speedup,
                "p95_ratio_32": p95,
                "p50_ratio_1": p50_idle,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "command": "python bench/batching.py",
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
