"""CPU per request, stage by stage: where inferd's gateway and replicas spend it, beside B0.

Two kinds of figures, from the same run:

- In process (``time.process_time`` over many requests, best of 5): the Python work of each
  stage with no socket, so no system call and no wake-up: B0's handler and model work, the
  model alone (``session.run``), a replica's whole answer (JSON in, pre_inference, conversion,
  the model, post_inference, JSON out, the reply frame), and the gateway's part (HTTP parsing,
  routing, the frame to the replica, metrics, access log, the HTTP response), driven through
  fake transports.
- End to end (wrk at 32 connections, CPU of each process from /proc): B0 and ``inferd serve``
  with 2 replicas, metrics and the access log on. What the end-to-end figure holds beyond the
  in-process one is the HTTP and socket system calls, the event loop and the wake-ups.

Usage: ``python bench/cost.py [--rounds N] [--duration S] [--baseline REV] [--doc]``.
``--baseline REV`` measures the same stages with inferd's source at git revision REV (checked out
in a temporary worktree; the examples, B0 and this script stay the current ones) and shows
both, before and now; ``--doc`` appends the section to docs/benchmarks.md, as ``make bench`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import measure, servers  # noqa: E402
from inferd.config.load import load_project  # noqa: E402
from inferd.gateway import queue as queue_module  # noqa: E402
from inferd.gateway.access import AccessLog  # noqa: E402
from inferd.gateway.app import Gateway  # noqa: E402
from inferd.gateway.http import HttpConnection  # noqa: E402
from inferd.handler.predictor import Predictor  # noqa: E402
from inferd.replica import messages  # noqa: E402

try:
    from inferd.replica import answering
except ImportError:  # a --baseline tree from before replica/answering.py (its worker answered)
    from inferd.replica import worker as answering  # type: ignore[no-redef]
from inferd.replica.handle import ReplicaHandle, ReplicaState  # noqa: E402

EXAMPLE = ROOT / "examples" / "iris-onnx"
MODEL = EXAMPLE / "models" / "iris.onnx"
SAMPLE = EXAMPLE / "sample.json"
LUA = ROOT / "bench" / "post.lua"
LABELS = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def per_call_us(work: Callable[[int], None], count: int) -> float:
    """CPU microseconds per call of ``work``'s loop, best of 5 (the least disturbed)."""
    work(count // 10)  # warm up
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        work(count)
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


def b0_work(count: int) -> None:
    """B0's per-request work minus HTTP (bench/b0_server.py's handler body)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    body = SAMPLE.read_bytes()

    def run(n: int) -> None:
        for _ in range(n):
            sample: Any = orjson.loads(body)
            features = [
                sample["sepal_length"],
                sample["sepal_width"],
                sample["petal_length"],
                sample["petal_width"],
            ]
            prediction = session.run(None, {name: np.array([features], dtype=np.float32)})
            orjson.dumps(LABELS[prediction[0][0]])

    run(count)


def in_process(count: int) -> dict[str, float]:
    """Python CPU per request of each stage (no sockets)."""
    config = load_project(EXAMPLE).apis[0]
    previous = Path.cwd()
    os.chdir(EXAMPLE)
    try:
        assert config.api.onnx is not None
        predictor = Predictor(config.api, EXAMPLE, EXAMPLE / config.api.onnx.model)
    finally:
        os.chdir(previous)
    body = SAMPLE.read_bytes()
    assert predictor.runtime is not None
    session = predictor.runtime.session  # type: ignore[attr-defined]
    feeds = {session.get_inputs()[0].name: np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)}

    def model(n: int) -> None:
        for _ in range(n):
            session.run(None, feeds)

    def replica(n: int) -> None:
        for _ in range(n):
            reply = answering.answer(predictor, messages.PREDICT, body)
            assert type(reply) is tuple
            messages.reply_frame(*reply)

    # The reply the gateway gets back, as a real replica sends it.
    reply = answering.answer(predictor, messages.PREDICT, body)
    assert type(reply) is tuple
    return {
        "b0": per_call_us(b0_work, count),
        "model": per_call_us(model, count),
        "replica": per_call_us(replica, count),
        "gateway": asyncio.run(_gateway(config, body, messages.reply_frame(*reply), count)),
    }


class _Transport:
    """Takes what a connection writes and drops it."""

    def write(self, data: bytes) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket: a replica handle never reads it itself (spinning)


class _Events:
    def replica_ready(self, handle: ReplicaHandle) -> None: ...

    def replica_failed(self, handle: ReplicaHandle, error: str, detail: str) -> None: ...

    def replica_closed(self, handle: ReplicaHandle) -> None: ...

    def replica_lost_because(self, handle: ReplicaHandle) -> str | None:
        return None

    def replica_stuck(self, handle: ReplicaHandle) -> None: ...


async def _gateway(config: Any, body: bytes, reply: bytes, count: int) -> float:
    """The gateway's Python per request: HTTP bytes in, frame out, reply in, response out."""
    gateway = Gateway(access_log=AccessLog(stream=io.StringIO()))
    gateway.add_api(config)
    queue_module.ALONE = -1  # these figures stand for a gateway under load, where nothing spins
    key = getattr(config, "key", config.name)  # older trees keyed APIs by name (--baseline)
    handle = ReplicaHandle(key, "r1", "v1", _Events())
    handle.connection_made(_Transport())  # type: ignore[arg-type]
    handle.state = ReplicaState.READY
    gateway.replica_ready(key, handle)
    conn = HttpConnection(gateway)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    request = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: %d\r\n\r\n%s" % (
        config.endpoint.encode(),
        len(body),
        body,
    )

    def run(n: int) -> None:
        for _ in range(n):
            conn.data_received(request)
            handle.data_received(reply)
        assert gateway.access_log is not None
        gateway.access_log.flush()  # the lines are formatted per request, written per flush

    return per_call_us(run, count)


def end_to_end(rounds: int, duration: float, workdir: Path) -> dict[str, list[tuple[float, float, float]]]:
    """(req/s, root process us, other processes us) per round, B0 and inferd taking turns."""
    specs = servers.build_servers(ROOT, MODEL, SAMPLE.read_bytes(), workdir, [], workdir)
    chosen = [spec for spec in specs if spec.key in ("b0", "inferd2")]
    results: dict[str, list[tuple[float, float, float]]] = {spec.key: [] for spec in chosen}
    for round_ in range(rounds):
        for spec in chosen if round_ % 2 == 0 else reversed(chosen):
            with servers.RunningServer(spec, workdir) as server:
                server.wait_ready()
                url = server.url("/iris/classifier")
                measure.run_wrk(url, 32, 1.0, SAMPLE, LUA)
                before = {p.pid: p.cpu_seconds for p in measure.process_tree(server.pid)}
                result = measure.run_wrk(url, 32, duration, SAMPLE, LUA)
                after = {p.pid: p.cpu_seconds for p in measure.process_tree(server.pid)}
            if result.errors or not result.requests:
                raise SystemExit(f"{spec.label}: wrk counted errors: {result.error_text()}")
            root = (after[server.pid] - before.get(server.pid, 0.0)) / result.requests * 1e6
            others = sum(after[p] - before.get(p, 0.0) for p in after if p != server.pid)
            results[spec.key].append((result.rps, root, others / result.requests * 1e6))
            print(
                f"  round {round_ + 1}: {spec.label:<20} {result.rps:>8,.0f} req/s  "
                f"root {root:6.1f} us  others {others / result.requests * 1e6:6.1f} us",
                flush=True,
            )
    return results


Measured = tuple[dict[str, float], dict[str, list[tuple[float, float, float]]]]


def measure_all(args: Any) -> Measured:
    python = in_process(args.count)
    for stage, value in python.items():
        print(f"in process: {stage:<8} {value:6.1f} us per request", flush=True)
    with tempfile.TemporaryDirectory(prefix="inferd-cost-") as tmp:
        return python, end_to_end(args.rounds, args.duration, Path(tmp))


def measure_baseline(revision: str, args: Any) -> Measured:
    """The same measurements with inferd's source at ``revision`` (a temporary git worktree)."""
    with tempfile.TemporaryDirectory(prefix="inferd-cost-base-") as tmp:
        tree, out = Path(tmp) / "tree", Path(tmp) / "cost.json"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(tree), revision],
            check=True,
        )
        try:
            env = dict(os.environ, PYTHONPATH=str(tree / "src"))
            command = [sys.executable, __file__, "--json", str(out), "--rounds", str(args.rounds)]
            command += ["--duration", str(args.duration), "--count", str(args.count)]
            print(f"baseline: inferd at {revision}", flush=True)
            subprocess.run(command, env=env, check=True)
            data = json.loads(out.read_text())
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    return data["python"], {key: [tuple(row) for row in rows] for key, rows in data["e2e"].items()}


def _medians(measured: Measured) -> dict[str, float]:
    python, e2e = measured

    def median(key: str, index: int) -> float:
        return statistics.median(row[index] for row in e2e[key])

    return {
        **{f"py_{stage}": value for stage, value in python.items()},
        "b0": median("b0", 1),
        "gateway": median("inferd2", 1),
        "replicas": median("inferd2", 2),
        "rps_ratio": median("inferd2", 0) / median("b0", 0),
    }


def section(now: Measured, before: Measured | None, revision: str | None, args: Any) -> str:
    columns = [("now", _medians(now))]
    if before is not None:
        columns.insert(0, (f"before ({revision})", _medians(before)))
    head = "| stage |" + "".join(f" {name}: in process | {name}: end to end |" for name, _ in columns)
    rule = "| --- |" + " ---: | ---: |" * len(columns)

    def row(label: str, python_key: str | None, e2e_key: str | None, strong: bool = False) -> str:
        cells = []
        for _, m in columns:
            cells.append(f"{m[python_key]:.1f} us" if python_key else "")
            value = "" if e2e_key is None else f"{m[e2e_key]:.1f} us"
            cells.append(f"**{value}**" if strong and value else value)
        return f"| {label} | " + " | ".join(cells) + " |"

    for _, m in columns:
        m["py_inferd"] = m["py_gateway"] + m["py_replica"]
        m["inferd"] = m["gateway"] + m["replicas"]
    lines = [
        head,
        rule,
        row("B0: HTTP (uvicorn, Starlette), JSON, handler, model (in process: no HTTP)", "py_b0", "b0"),
        row("model alone (`session.run`)", "py_model", None),
        row(
            "inferd replica: JSON, pre_inference, conversion, model, post_inference, frame",
            "py_replica",
            "replicas",
        ),
        row("inferd gateway: HTTP, routing, frames, metrics, access log", "py_gateway", "gateway"),
        row("inferd, gateway + replicas", "py_inferd", "inferd", strong=True),
    ]
    ratios = "; ".join(
        f"{name}: CPU per request **{m['inferd'] / m['b0']:.2f}x** B0's, "
        f"requests/s {m['rps_ratio']:.2f}x B0's"
        for name, m in columns
    )
    return (
        "\n## Cost per request by stage (`python bench/cost.py`)\n\n"
        "The iris ONNX example. *In process*: the Python work of a stage with no socket "
        "(`time.process_time` over many requests, best of 5). *End to end*: wrk at 32 connections, "
        f"CPU of each process from /proc per request, median of {args.rounds} rounds of "
        f"{args.duration:g} s, B0 and `inferd serve` (2 replicas, metrics and access log on) taking "
        "turns. The end-to-end figure beyond the in-process one is the system calls (HTTP and the "
        "replica's socket), the event loop and the wake-ups."
        + (
            f" *Before*: the same script with inferd's source at {revision}, in the same run."
            if before is not None
            else ""
        )
        + f" Load average at the end: {os.getloadavg()[0]:.1f}.\n\n"
        + "\n".join(lines)
        + f"\n\nEnd to end, median rounds (bar: CPU per request <= 1.0x B0's): {ratios}.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4, help="end-to-end rounds per server (default 4)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of wrk per round (default 5)")
    parser.add_argument("--count", type=int, default=20000, help="requests per in-process timing")
    parser.add_argument("--baseline", metavar="REV", help="also measure inferd's source at this git revision")
    parser.add_argument("--doc", action="store_true", help="append the section to docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # --baseline's child writes here
    args = parser.parse_args(argv)
    measure.ensure_wrk()
    before = measure_baseline(args.baseline, args) if args.baseline else None
    now = measure_all(args)
    if args.json is not None:
        args.json.write_text(json.dumps({"python": now[0], "e2e": now[1]}))
        return 0
    text = section(now, before, args.baseline, args)
    print(text)
    doc = ROOT / "docs" / "benchmarks.md"
    if args.doc and doc.exists():
        with doc.open("a", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
