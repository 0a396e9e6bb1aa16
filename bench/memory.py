"""Memory per replica (part of `make bench`): what replicas of one API hold, shared and not.

- An ONNX model with 256 MiB of float32 weights (four MatMul layers, built here) served by
  `inferd serve` with exactly 1 and 4 replicas (`min_replicas` = `max_replicas`), weights shared
  (the default) and not (`INFERD_SHARE_WEIGHTS=0`): the sum of the replicas' proportional set
  size (PSS, `/proc/PID/smaps_rollup`) once every replica has answered requests;
- per-request latency of one replica, shared against unshared, both servers up, requests sent
  one at a time in alternating blocks so drift on a busy machine hits both alike;
- examples/iris-tensorflow at 1 and 4 replicas, forked by the TensorFlow zygote and spawned
  (`INFERD_ZYGOTE=0`): its model is tiny, so this is the runtime's own memory; plus the threads
  TensorFlow runs after its import and after loading the SavedModel (why the zygote does not
  load models before forking).

`python bench/memory.py` prints the figures and writes its section of docs/benchmarks.md
(replacing the one an earlier run wrote). `python bench/memory.py --external-data` measures only
the PSS rows, on the same weights saved as external data beside the model file
(`save_as_external_data`, the usual way for large models), and writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import free_port  # noqa: E402

INFERD = str(Path(sys.executable).parent / "inferd")
WIDTH, HIDDEN = 2048, 8192  # four float32 layers of 2048 x 8192: 256 MiB
HEADING = "## Cost per replica: memory (`python bench/memory.py`)"
TF_THREADS = """
import os, sys
from pathlib import Path
def threads(): return len(os.listdir("/proc/self/task"))
import inferd.replica.worker
before = threads()
import tensorflow as tf
imported = threads()
from inferd.runtimes import load_runtime
load_runtime("tensorflow", Path(sys.argv[1]))
print(before, imported, threads())
"""


def build_model(path: Path, width: int = WIDTH, hidden: int = HIDDEN, external: bool = False) -> int:
    """An ONNX model x[n, width] -> 4 MatMuls -> y[n, width]; the bytes of its weights
    (``external``: in ``<name>.data`` beside the model file)."""
    from onnx import TensorProto, helper, numpy_helper, save_model

    rng = np.random.default_rng(0)
    dims = [width, hidden, width, hidden, width]
    weights, nodes, previous = [], [], "x"
    for layer in range(4):
        w = (rng.standard_normal((dims[layer], dims[layer + 1]), dtype=np.float32) * 0.02).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{layer}"))
        out = "y" if layer == 3 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{layer}"], [out]))
        previous = out
    graph = helper.make_graph(
        nodes,
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external:
        save_model(model, str(path), save_as_external_data=True, location=f"{path.name}.data")
    else:
        save_model(model, str(path))
    return sum(int(np.prod(w.dims)) * 4 for w in weights)


def project(root: Path, model: Path, replicas: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for source in (model, model.with_name(f"{model.name}.data")):  # with its external data
        if source.exists() and not (root / source.name).exists():
            os.link(source, root / source.name)
    (root / "cortex.yaml").write_text(
        "- kind: deployment\n  name: bench\n- kind: api\n  name: weights\n  onnx:\n"
        f"    model: {model.name}\n  compute:\n    min_replicas: {replicas}\n    max_replicas: {replicas}\n"
        "  timeout: 120\n"
    )
    return root


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def is_zygote(pid: int) -> bool:
    try:
        return b"inferd.replica.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def replica_pids(server: int) -> tuple[set[int], set[int]]:
    """The replicas of an ``inferd serve`` (its children and its zygotes' children), the zygotes."""
    direct = children(server)
    zygotes = {pid for pid in direct if is_zygote(pid)}
    forked = set().union(*(children(pid) for pid in zygotes)) if zygotes else set()
    return (direct - zygotes) | forked, zygotes


def pss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no Pss in /proc/{pid}/smaps_rollup")


class Served:
    """``inferd serve`` on a project until stopped, with its replicas ready."""

    def __init__(self, root: Path, env: dict[str, str], replicas: int, *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [INFERD, "serve", str(root), "--port", str(self.port), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.replicas = replicas
        self.base = f"http://127.0.0.1:{self.port}"

    def wait(self, path: str, timeout: float = 600.0) -> Served:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"inferd serve exited with {self.process.returncode}")
            try:
                answer = requests.get(self.base + path, timeout=5)
                if answer.status_code == 404 and "endpoints: none" not in answer.text:
                    raise SystemExit(f"{path}: {answer.text}")
                if answer.json().get("replicas", {}).get("ready", 0) >= self.replicas:
                    return self
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.replicas} replicas were not ready in {timeout:.0f} s")

    def load(self, path: str, body: bytes, rounds: int = 3) -> None:
        """Requests enough at once that every replica answers some."""

        def one() -> None:
            assert requests.post(self.base + path, data=body, timeout=300).status_code == 200

        for _ in range(rounds):
            threads = [threading.Thread(target=one) for _ in range(self.replicas * 2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def pss(self) -> tuple[list[float], float]:
        replicas, zygotes = replica_pids(self.process.pid)
        if len(replicas) != self.replicas:
            raise SystemExit(f"expected {self.replicas} replica processes, found {len(replicas)}")
        return sorted(pss_mib(pid) for pid in replicas), sum(pss_mib(pid) for pid in zygotes)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(root: Path, env: dict[str, str], replicas: int, path: str, body: bytes, *args: str) -> Any:
    served = Served(root, env, replicas, *args)
    try:
        served.wait(path)
        served.load(path, body)
        time.sleep(1)
        return served.pss()
    finally:
        served.stop()


def latency(
    servers: dict[str, Served], path: str, body: bytes, rounds: int, block: int
) -> dict[str, list[float]]:
    """Milliseconds per request, one request at a time, alternating blocks between servers."""
    times: dict[str, list[float]] = {name: [] for name in servers}
    sessions = {name: requests.Session() for name in servers}
    for name, served in servers.items():  # warm up
        for _ in range(5):
            sessions[name].post(served.base + path, data=body, timeout=60)
    order = list(servers.items())
    for _ in range(rounds):
        order.reverse()  # each goes first as often as the other
        for name, served in order:
            for _ in range(block):
                started = time.perf_counter()
                answer = sessions[name].post(served.base + path, data=body, timeout=60)
                times[name].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
    return times


def write_section(doc: Path, text: str) -> None:
    if not doc.exists():
        return
    content = doc.read_text(encoding="utf-8")
    start = content.find(HEADING)
    if start >= 0:
        end = content.find("\n## ", start + len(HEADING))
        content = content[:start].rstrip("\n") + "\n\n" + text + (content[end:] if end >= 0 else "")
    else:
        content = content.rstrip("\n") + "\n\n" + text
    doc.write_text(content, encoding="utf-8")


def main() -> int:
    from inferd.runtimes.onnx_shared import shared_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--external-data", action="store_true", help="weights in a file beside the model; PSS rows only"
    )
    external = parser.parse_args().external_data
    work = Path(tempfile.mkdtemp(prefix="inferd-memory-"))
    try:
        env = dict(os.environ, INFERD_HOME=str(work / "home"))
        os.environ["INFERD_HOME"] = env["INFERD_HOME"]
        model = work / "weights.onnx"
        weight_bytes = build_model(model, external=external)
        started = time.perf_counter()
        assert shared_model(model) is not None
        convert_s = time.perf_counter() - started
        row = np.random.default_rng(1).standard_normal(WIDTH).round(3).tolist()
        body = json.dumps(row).encode()
        batch = json.dumps([row] * 32).encode()
        path = "/bench/weights"
        pss: dict[tuple[str, int], list[float]] = {}
        zygotes = 0.0
        for mode, share in (("shared", "1"), ("unshared", "0")):
            for replicas in (1, 4):
                root = project(work / f"{mode}-{replicas}", model, replicas)
                values, zygote_mib = measure(
                    root, dict(env, INFERD_SHARE_WEIGHTS=share), replicas, path, body
                )
                pss[mode, replicas] = values
                zygotes = max(zygotes, zygote_mib)
                print(
                    f"{mode}, {replicas} replica(s): PSS {sum(values):.0f} MiB "
                    f"({', '.join(f'{v:.0f}' for v in values)})"
                )
        if external:
            for mode in ("shared", "unshared"):
                ratio = sum(pss[mode, 4]) / sum(pss[mode, 1])
                print(f"{mode}, weights as external data: 4 replicas hold {ratio:.2f}x the PSS of 1")
            return 0
        servers = {
            mode: Served(project(work / f"{mode}-1", model, 1), dict(env, INFERD_SHARE_WEIGHTS=share), 1)
            for mode, share in (("shared", "1"), ("unshared", "0"))
        }
        try:
            for served in servers.values():
                served.wait(path)
            rounds = int(os.environ.get("INFERD_BENCH_ROUNDS", 10))
            times = latency(servers, path, body, rounds=rounds, block=20)
            batch_times = latency(servers, path, batch, rounds=max(1, rounds // 2), block=4)
        finally:
            for served in servers.values():
                served.stop()
        p50 = {mode: statistics.median(values) for mode, values in times.items()}
        p50_batch = {mode: statistics.median(values) for mode, values in batch_times.items()}
        print(
            f"per-request latency, 1 replica, p50: shared {p50['shared']:.2f} ms, "
            f"unshared {p50['unshared']:.2f} ms; 32 rows: shared {p50_batch['shared']:.1f} ms, "
            f"unshared {p50_batch['unshared']:.1f} ms"
        )

        tf_root = work / "iris-tensorflow"
        shutil.copytree(ROOT / "examples" / "iris-tensorflow", tf_root)
        tf_body = (tf_root / "sample.json").read_bytes()
        tf: dict[tuple[str, int], tuple[list[float], float]] = {}
        for mode, zygote in (("forked", "1"), ("spawned", "0")):
            for replicas in (1, 4):
                tf_env = dict(env, INFERD_ZYGOTE=zygote)
                tf[mode, replicas] = measure(
                    tf_root, tf_env, replicas, "/iris-tf/tensorflow", tf_body, "--replicas", str(replicas)
                )
                values, zygote_mib = tf[mode, replicas]
                print(
                    f"iris-tensorflow {mode}, {replicas} replica(s): PSS {sum(values):.0f} MiB, "
                    f"its zygote {zygote_mib:.0f} MiB"
                )
        threads = subprocess.run(
            [sys.executable, "-c", TF_THREADS, str(tf_root / "models")],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.split()
        print(
            f"TensorFlow threads: {threads[0]} before its import, {threads[1]} after, "
            f"{threads[2]} after loading"
        )
        section = render(
            weight_bytes,
            convert_s,
            (pss, zygotes),
            (p50, p50_batch),
            len(times["shared"]),
            tf,
            [int(t) for t in threads],
        )
        write_section(ROOT / "docs" / "benchmarks.md", section)
        results = ROOT / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        (results / "memory.md").write_text(section, encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def render(
    weight_bytes: int,
    convert_s: float,
    measured: tuple[dict[tuple[str, int], list[float]], float],
    p50s: tuple[dict[str, float], dict[str, float]],
    count: int,
    tf: dict[tuple[str, int], tuple[list[float], float]],
    threads: list[int],
) -> str:
    p50, p50_batch = p50s
    pss, zygote = measured
    total = {key: sum(values) for key, values in pss.items()}
    ratio = {mode: total[mode, 4] / total[mode, 1] for mode in ("shared", "unshared")}
    lines = [
        f"{HEADING}\n\n",
        f"An ONNX model with {weight_bytes / 2**20:.0f} MiB of float32 weights (four 2048 x 8192 MatMul "
        "layers, built by the bench) served by `inferd serve` with exactly 1 and 4 replicas. PSS is "
        "the sum of the replicas' proportional set size (`/proc/PID/smaps_rollup`) after every replica "
        "answered requests: a shared page counts once in all, split between the processes that map "
        "it. Shared is the default; `INFERD_SHARE_WEIGHTS=0` loads each replica's own copy. Having "
        "onnxruntime write the model once into inferd's cache (weights and pre-packed weights in one "
        f"file the replicas map) took {convert_s:.1f} s.\n\n",
        "| weights | 1 replica | 4 replicas | 4 / 1 |\n",
        "| --- | ---: | ---: | ---: |\n",
    ]
    for mode in ("shared", "unshared"):
        lines.append(
            f"| {mode} | {total[mode, 1]:.0f} MiB | {total[mode, 4]:.0f} MiB | **{ratio[mode]:.2f}x** |\n"
        )
    lines += [
        f"\nPer-request latency of one replica, p50 (one request at a time, alternating blocks "
        f"between a shared and an unshared server; {count} requests of 1 row each way):\n\n",
        "| request | shared | unshared | shared / unshared |\n",
        "| --- | ---: | ---: | ---: |\n",
        f"| 1 row | {p50['shared']:.1f} ms | {p50['unshared']:.1f} ms | "
        f"**{p50['shared'] / p50['unshared']:.2f}** |\n",
        f"| 32 rows | {p50_batch['shared']:.1f} ms | {p50_batch['unshared']:.1f} ms | "
        f"**{p50_batch['shared'] / p50_batch['unshared']:.2f}** |\n\n",
        "Bars: 4 replicas at most 1.5x the PSS of one; latency within 5% of unshared. Not in the "
        f"sums: the onnxruntime zygote that forks the replicas, {zygote:.0f} MiB (one "
        "per runtime, whatever the number of APIs and replicas). Peers, from their documentation "
        "(not measured here): LitServe scales by serving more copies of the model, one per worker "
        "(https://lightning.ai/docs/litserve/features/autoscaling); BentoML's `workers=N` starts N "
        "processes that each run the service, its model loading included "
        "(https://docs.bentoml.com/en/latest/build-with-bentoml/parallelize-requests.html).\n\n",
    ]
    lines += [
        "TensorFlow (examples/iris-tensorflow, a tiny model, so this is TensorFlow's own memory): "
        "replicas forked by the TensorFlow zygote (which imported TensorFlow before forking; the "
        "zygote's own PSS is counted with the replicas) and spawned as "
        "fresh processes (`INFERD_ZYGOTE=0`).\n\n",
        "| replicas | 1 replica | 4 replicas | 4 / 1 |\n",
        "| --- | ---: | ---: | ---: |\n",
    ]
    added = {}
    for mode in ("forked", "spawned"):
        one, four = sum(tf[mode, 1][0]) + tf[mode, 1][1], sum(tf[mode, 4][0]) + tf[mode, 4][1]
        added[mode] = (four - one) / 3
        lines.append(f"| {mode} | {one:.0f} MiB | {four:.0f} MiB | {four / one:.2f}x |\n")
    if added["forked"] < added["spawned"] / 2:
        verdict = (
            "a forked replica shares what TensorFlow allocated at its import in the zygote (copy on "
            "write) and holds only what its own load and first run allocate, so forking from the "
            "zygote saves memory as well as start time."
        )
    else:
        verdict = (
            "what TensorFlow allocates for itself at import, load and first run is private to each "
            "process, so forking from the zygote saves start time, not memory."
        )
    lines.append(
        f"\nEach TensorFlow replica after the first adds {added['forked']:.0f} MiB forked and "
        f"{added['spawned']:.0f} MiB spawned: {verdict} "
        f"Threads (`/proc/self/task`) in a process with inferd's replica modules imported: {threads[0]}; "
        f"after `import tensorflow`: {threads[1]}; after loading the SavedModel: {threads[2]}. Loading "
        "starts TensorFlow's thread pools, and threads do not survive `fork` (a lock one of them held "
        "stays locked in the child), so a model loaded in the zygote before the fork is not safe: the "
        "zygote imports TensorFlow, loads no model, and each replica loads its own SavedModel.\n"
    )
    return "".join(lines)


if __name__ == "__main__":
    sys.exit(main())
