"""End-to-end check of inferd on a machine with NVIDIA GPUs (under 5 minutes).

    python scripts/gpu_check.py            # exit 0: every check passed; 1: one failed; 2: no GPU

With a private operator (its own INFERD_HOME and port), it deploys the iris ONNX and
TensorFlow examples and a small matrix-product ONNX model with ``compute.gpu: 1`` on as many
replicas as there are GPUs, next to the same models with ``gpu: 0``, and checks: each replica on
its own device (``CUDA_VISIBLE_DEVICES``), the provider in use (CUDAExecutionProvider, TF's GPU),
GPU memory held by every GPU replica (NVML), a batch of requests answered, the numbers equal to
the CPU's within float tolerance, one replica more than the GPUs refused as ``compute
unavailable`` with the reason, and two replicas sharing one device with ``gpu_memory``.

Needs inferd installed with the ``gpu`` extra (not ``all``: onnxruntime-gpu and onnxruntime
cannot share an environment), the ``onnx`` package, and the example models built (README,
GPUs). ``--rehearse`` runs every step on the CPU (``gpu: 0``) to check the script itself on a
machine without GPUs; it proves nothing about GPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INFERD = Path(sys.executable).parent / "inferd"
DEADLINE_SECONDS = 280.0
BATCH = 64
STARTED = time.monotonic()


class CheckFailed(Exception):
    """One check failed: the message says what was expected and what came."""


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {text}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# ---------- preflight: what is installed and what the driver reports


def gpu_inventory() -> tuple[list[Any], str]:
    from inferd.engine.gpus import GpuPool

    pool = GpuPool.discover()
    return pool.gpus, pool.reason


def installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def preflight(rehearse: bool) -> dict[str, str]:
    """What keeps each runtime off the GPU: ``{"onnx" | "tensorflow": problem}`` (empty: none)."""
    if rehearse:
        return {}
    clashes = [
        f"{cpu} and {gpu}"
        for cpu, gpu in (("onnxruntime", "onnxruntime-gpu"), ("tensorflow-cpu", "tensorflow"))
        if installed(cpu) and installed(gpu)
    ]
    # Both builds of a runtime write the same module: whichever was installed last may work.
    hint = (
        f" ({' and '.join(clashes)} are both installed and overwrite each other: uninstall both, then "
        "pip install 'inferd[gpu]')"
        if clashes
        else ": pip install 'inferd[gpu]'"
    )
    problems: dict[str, str] = {}
    probes = {
        "onnx": "import onnxruntime as ort\nprint(json.dumps(ort.get_available_providers()))",
        "tensorflow": "import tensorflow as tf\nprint(len(tf.config.list_physical_devices('GPU')))",
    }
    for runtime, code in probes.items():
        probe = f"import os, json\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n{code}"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            problems[runtime] = f"importing {runtime} failed{hint}:\n{result.stderr[-1500:]}"
            continue
        found = json.loads(result.stdout.strip().splitlines()[-1])
        if runtime == "onnx" and "CUDAExecutionProvider" not in found:
            problems[runtime] = f"onnxruntime has no CUDAExecutionProvider (it has {found}){hint}"
        elif runtime == "tensorflow" and not found:
            problems[runtime] = f"TensorFlow sees no GPU (tensorflow-cpu, or no CUDA libraries){hint}"
        else:
            say(f"ok   {runtime}: {found}")
    return problems


# ---------- the models and projects


def build_matmul_model(path: Path) -> np.ndarray[Any, Any]:
    """y = relu(x @ w1) @ w2 with x [N, 256]: real GPU kernels (the iris models are mostly CPU ops)."""
    from onnx import TensorProto, helper, numpy_helper, save_model

    rng = np.random.default_rng(7)
    w1 = rng.normal(0, 0.1, (256, 256)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (256, 16)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
    graph = helper.make_graph(nodes, "matmul", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save_model(model, str(path))
    return rng.normal(0, 1, (BATCH, 256)).astype(np.float32)


def api_yaml(name: str, block: str, gpu: int, replicas: int, extra: str = "") -> str:
    return (
        f"- kind: api\n  name: {name}\n{block}"
        f"  compute:\n    cpu: 100m\n    gpu: {gpu}\n"
        f"    min_replicas: {replicas}\n    max_replicas: {replicas}\n"
        f"{extra}"
    )


ONNX_IRIS = "  onnx:\n    model: iris.onnx\n"
TF_IRIS = "  tensorflow:\n    model: iris-tf\n"
MATMUL = "  onnx:\n    model: matmul.onnx\n"


def write_project(folder: Path, name: str, apis: list[str]) -> Path:
    project = folder / name
    project.mkdir(parents=True, exist_ok=True)
    for source, target in (
        (EXAMPLES / "iris-onnx" / "models" / "iris.onnx", project / "iris.onnx"),
        (EXAMPLES / "iris-tensorflow" / "models" / "iris", project / "iris-tf"),
        (folder / "matmul.onnx", project / "matmul.onnx"),
    ):
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy(source, target)
    (project / "cortex.yaml").write_text(f"- kind: deployment\n  name: {name}\n" + "".join(apis))
    return project


# ---------- the operator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Operator:
    """``inferd`` commands against a private operator."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, INFERD_HOME=str(home), INFERD_PORT=str(self.port))

    def run(self, *args: str, check_exit: bool = True) -> subprocess.CompletedProcess[str]:
        left = max(10.0, DEADLINE_SECONDS - (time.monotonic() - STARTED))
        result = subprocess.run(
            [str(INFERD), *args], env=self.env, capture_output=True, text=True, timeout=left
        )
        if check_exit and result.returncode != 0:
            raise CheckFailed(f"inferd {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def api(self, name: str) -> dict[str, Any]:
        """What ``inferd get NAME -o json`` says, asked through the Python client.

        The waits poll this: a CLI process per poll cost about a CPU-second each, taken from the
        replicas being waited for.
        """
        from inferd.cli.inspect import resolve
        from inferd.client import Client
        from inferd.errors import InferdError

        client = Client(self.home)
        try:
            return dict(client.api(resolve(client, name)))
        except InferdError as exc:
            raise CheckFailed(f"inferd get {name}: {exc}") from None
        finally:
            client.close()

    def wait(
        self, name: str, done: Callable[[dict[str, Any]], bool], what: str, timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.api(name)
            if done(info):
                return info
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"api '{name}' did not become {what} within {timeout:.0f}s: status {info['status']}, "
                    f"error {info.get('error')!r}\n{self.run('logs', name, check_exit=False).stdout[-3000:]}"
                )
            time.sleep(0.1)

    def live(self, name: str, replicas: int, timeout: float = 150) -> dict[str, Any]:
        return self.wait(
            name,
            lambda i: i["status"] == "live" and sum(r["state"] == "ready" for r in i["replicas"]) == replicas,
            f"live with {replicas} ready replica(s)",
            timeout,
        )

    def post(self, name: str, body: Any) -> Any:
        response = requests.post(f"{self.url}/{name}", json=body, timeout=60)
        check(
            response.status_code == 200,
            f"POST /{name} answered {response.status_code}: {response.text[:500]}",
        )
        return response.json()


@contextlib.contextmanager
def operator(home: Path) -> Iterator[Operator]:
    runner = Operator(home)
    try:
        yield runner
    finally:
        runner.run("down", check_exit=False)


# ---------- the checks


def check_replicas(op: Operator, name: str, gpus: int, provider: str, rehearse: bool) -> None:
    """Each replica on its own device, on the expected provider, holding GPU memory."""
    info = op.api(name)
    ready = [r for r in info["replicas"] if r["state"] == "ready"]
    devices = [str(r.get("device")) for r in ready]
    if rehearse:
        check(all(d in ("CPUExecutionProvider", "CPU") for d in devices), f"{name}: devices {devices}")
        return
    check(all(provider in d for d in devices), f"{name}: replicas run on {devices}, expected {provider}")
    held = [[g["uuid"] for g in r.get("gpus", [])] for r in ready]
    check(all(len(h) == gpus for h in held), f"{name}: replicas hold {held}, expected {gpus} GPU each")
    flat = [uuid for h in held for uuid in h]
    check(len(flat) == len(set(flat)), f"{name}: two replicas share a device: {held}")
    memory = [g.get("memory_used") for r in ready for g in r.get("gpus", [])]
    check(all(m and m > 0 for m in memory), f"{name}: a GPU replica holds no GPU memory (NVML): {memory}")
    samples = {
        (sample.name, sample.labels.get("replica"))
        for family in text_string_to_metric_families(requests.get(f"{op.url}/metrics", timeout=10).text)
        for sample in family.samples
        if sample.labels.get("api") == name
    }
    for replica in ready:
        for metric in ("inferd_replica_gpu_memory_bytes", "inferd_replica_gpu_memory_total_bytes"):
            check((metric, replica["id"]) in samples, f"/metrics has no {metric} for replica {replica['id']}")
    verbose = op.run("get", name, "-v").stdout
    check(provider in verbose, f"`inferd get {name} -v` does not show {provider}:\n{verbose}")
    say(
        f"ok   {name}: {len(ready)} replica(s) on {provider}, devices {flat}, "
        f"GPU memory {memory} (also in /metrics)"
    )


def send_batch(op: Operator, name: str, bodies: list[Any]) -> list[Any]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda body: op.post(name, body), bodies))


def iris_samples() -> list[dict[str, float]]:
    rng = np.random.default_rng(3)
    low, high = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    rows = rng.uniform(low, high, (BATCH, 4)).round(2)
    keys = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    return [dict(zip(keys, map(float, row), strict=True)) for row in rows]


def probabilities(answer: Any) -> np.ndarray[Any, Any]:
    """The class probabilities of one raw answer (ONNX: [labels, [{class: p}]]; TF: a dict)."""
    if isinstance(answer, dict):
        return np.asarray(answer["probabilities"], dtype=np.float64)
    (row,) = answer[1]
    return np.asarray([row[key] for key in sorted(row, key=int)], dtype=np.float64)


def compare(
    name: str, gpu: list[Any], cpu: list[Any], tolerance: float, values: Callable[[Any], Any]
) -> None:
    """The GPU's answers equal the CPU's within ``tolerance`` (TF32 and kernel order differ)."""
    check(len(gpu) == len(cpu), f"{name}: {len(gpu)} GPU answers, {len(cpu)} CPU answers")
    worst = 0.0
    for index, (a, b) in enumerate(zip(gpu, cpu, strict=True)):
        got, want = np.asarray(values(a), dtype=np.float64), np.asarray(values(b), dtype=np.float64)
        check(
            got.shape == want.shape, f"{name}: answer {index} has shape {got.shape}, the CPU's {want.shape}"
        )
        worst = max(worst, float(np.max(np.abs(got - want))) if got.size else 0.0)
    check(
        worst <= tolerance, f"{name}: the GPU's numbers differ from the CPU's by {worst:.3g} (> {tolerance})"
    )
    say(f"ok   {name}: {len(gpu)} answers equal the CPU's (largest difference {worst:.2g})")


class Phases:
    """The checks, in phases that share an operator; each phase cleans up after itself."""

    def __init__(self, workdir: Path, op: Operator, gpus: int, rehearse: bool) -> None:
        self.workdir = workdir
        self.op = op
        self.gpus = gpus
        self.rehearse = rehearse
        self.gpu = 0 if rehearse else 1
        self.replicas = max(1, gpus)
        self.inputs = build_matmul_model(workdir / "matmul.onnx")
        self.samples = iris_samples()

    def onnx(self) -> None:
        """The iris example and a matrix product, one replica per GPU, next to CPU twins."""
        op, gpu, replicas = self.op, self.gpu, self.replicas
        project = write_project(
            self.workdir,
            "onnx",
            [api_yaml("iris-gpu", ONNX_IRIS, gpu, replicas), api_yaml("iris-cpu", ONNX_IRIS, 0, 1)],
        )
        op.run("deploy", str(project), "--no-wait")
        op.live("iris-gpu", replicas)
        op.live("iris-cpu", 1)
        check_replicas(op, "iris-gpu", 1, "CUDAExecutionProvider", self.rehearse)
        keys = ("sepal_length", "sepal_width", "petal_length", "petal_width")
        bodies = [[[sample[k] for k in keys]] for sample in self.samples]
        gpu_answers = send_batch(op, "onnx/iris-gpu", bodies)
        compare("onnx iris", gpu_answers, send_batch(op, "onnx/iris-cpu", bodies), 1e-4, probabilities)
        # The matrix product takes the GPUs over: the iris replicas give theirs back first.
        project = write_project(
            self.workdir,
            "onnx",
            [api_yaml("matmul-gpu", MATMUL, gpu, replicas), api_yaml("matmul-cpu", MATMUL, 0, 1)],
        )
        op.run("deploy", str(project), "--no-wait")
        op.live("matmul-gpu", replicas)
        op.live("matmul-cpu", 1)
        check_replicas(op, "matmul-gpu", 1, "CUDAExecutionProvider", self.rehearse)
        rows = [[row.tolist()] for row in self.inputs]
        gpu_answers = send_batch(op, "onnx/matmul-gpu", rows)
        compare("onnx matmul", gpu_answers, send_batch(op, "onnx/matmul-cpu", rows), 2e-2, lambda a: a[0])

    def tensorflow(self) -> None:
        """The iris SavedModel, one replica per GPU (memory growing on demand), next to a CPU twin."""
        op = self.op
        project = write_project(
            self.workdir,
            "tf",
            [api_yaml("tf-gpu", TF_IRIS, self.gpu, self.replicas), api_yaml("tf-cpu", TF_IRIS, 0, 1)],
        )
        op.run("deploy", str(project), "--no-wait")
        op.live("tf-gpu", self.replicas)
        op.live("tf-cpu", 1)
        check_replicas(op, "tf-gpu", 1, "GPU", self.rehearse)
        gpu_answers = send_batch(op, "tf/tf-gpu", self.samples)
        # TF32 matrix products on the GPU: close to the CPU's, not equal.
        compare(
            "tensorflow iris", gpu_answers, send_batch(op, "tf/tf-cpu", self.samples), 1e-2, probabilities
        )

    def overflow(self) -> None:
        """One replica more than the GPUs: compute unavailable, naming what is missing."""
        project = write_project(self.workdir, "over", [api_yaml("too-many", MATMUL, 1, self.gpus + 1)])
        self.op.run("deploy", str(project), "--no-wait", check_exit=False)
        info = self.op.wait(
            "too-many", lambda i: i["status"] == "compute unavailable", "compute unavailable", 60
        )
        check(
            "GPU" in str(info.get("error")),
            f"compute unavailable without a GPU reason: {info.get('error')!r}",
        )
        say(f"ok   too-many: compute unavailable: {info['error']}")

    def sharing(self) -> None:
        """Sharing, asked for: an ONNX and a TF replica on one device with gpu_memory."""
        share = "    gpu_memory: 2Gi\n"
        project = write_project(
            self.workdir,
            "shared",
            [api_yaml("share-onnx", MATMUL, 1, 1, share), api_yaml("share-tf", TF_IRIS, 1, 1, share)],
        )
        self.op.run("deploy", str(project), "--no-wait")
        devices = []
        for name in ("share-onnx", "share-tf"):
            info = self.op.live(name, 1)
            devices += [g["uuid"] for r in info["replicas"] if r["state"] == "ready" for g in r["gpus"]]
        check(
            len(devices) == 2 and len(set(devices)) == 1, f"shared replicas on {devices}, expected one device"
        )
        self.op.post("shared/share-onnx", [self.inputs[0].tolist()])
        self.op.post("shared/share-tf", self.samples[0])
        say(f"ok   gpu_memory: an ONNX and a TF replica share {devices[0]}")


def run_checks(workdir: Path, gpus: int, rehearse: bool, problems: dict[str, str]) -> list[str]:
    """Every phase whose runtimes work (a failed phase does not stop the next); the failures."""
    failures = [f"{runtime}: {problem}" for runtime, problem in problems.items()]
    with operator(workdir / "home") as op:
        phases = Phases(workdir, op, gpus, rehearse)
        plan: list[tuple[str, Callable[[], None], str, tuple[str, ...]]] = [
            ("onnx", phases.onnx, "onnx", ("onnx",)),
            ("tensorflow", phases.tensorflow, "tf", ("tensorflow",)),
        ]
        if not rehearse:
            plan += [
                ("compute unavailable", phases.overflow, "over", ("onnx",)),
                ("gpu_memory sharing", phases.sharing, "shared", ("onnx", "tensorflow")),
            ]
        for title, phase, deployment, needs in plan:
            broken = [runtime for runtime in needs if runtime in problems]
            if broken:
                failures.append(f"{title}: not run ({' and '.join(broken)} cannot use the GPU)")
                say(f"SKIP {title}: {' and '.join(broken)} cannot use the GPU")
                continue
            try:
                phase()
            except (CheckFailed, subprocess.TimeoutExpired, requests.RequestException) as exc:
                failures.append(f"{title}: {exc}")
                say(f"FAIL {title}: {exc}")
            finally:  # its replicas give their devices back before the next phase
                op.run("delete", deployment, check_exit=False)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="End-to-end check of inferd on a machine with NVIDIA GPUs. Exits 0 when every "
        "check passes, 1 naming the check that failed, 2 when the machine has no GPU."
    )
    parser.add_argument(
        "--rehearse", action="store_true", help="run every step on the CPU (checks the script)"
    )
    args = parser.parse_args(argv)
    gpus, reason = gpu_inventory()
    if not gpus and not args.rehearse:
        print(f"gpu_check: no GPU on this machine ({reason}); nothing was checked", file=sys.stderr)
        return 2
    for model in (
        EXAMPLES / "iris-onnx" / "models" / "iris.onnx",
        EXAMPLES / "iris-tensorflow" / "models" / "iris",
    ):
        if not model.exists():
            print(
                f"gpu_check: {model} is missing: build the example models first (python "
                "examples/iris-onnx/build_model.py; python examples/iris-tensorflow/build_model.py)",
                file=sys.stderr,
            )
            return 1
    if gpus:
        say(f"GPUs: {', '.join(f'{g.index}: {g.name} ({g.memory / 2**30:.0f} GiB)' for g in gpus)}")
    workdir = Path(tempfile.mkdtemp(prefix="inferd-gpu-check-"))
    try:
        failures = run_checks(workdir, len(gpus), args.rehearse, preflight(args.rehearse))
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        failures = [str(exc)]
    except ImportError as exc:  # onnx builds the matrix-product model
        failures = [f"{exc.name} is not installed (pip install {exc.name})"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print(f"gpu_check: FAILED ({len(failures)}):", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    what = "rehearsal on the CPU passed (nothing about GPUs was checked)" if args.rehearse else "passed"
    say(f"gpu_check: {what} in {time.monotonic() - STARTED:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
