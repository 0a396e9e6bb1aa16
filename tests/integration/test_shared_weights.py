"""Replicas of one ONNX API share the model's weights: one copy in memory, whatever the count."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import Server, make_project, replica_pids, wait_for

Serve = Callable[..., Server]
WIDTH, HIDDEN = 1024, 8192  # four float32 layers of 1024 x 8192: 128 MiB
WEIGHTS_MIB = 128
SAMPLE = np.linspace(-1, 1, WIDTH, dtype=np.float32).tolist()


def build_model(path: Path) -> Path:
    rng = np.random.default_rng(0)
    dims = [WIDTH, HIDDEN, WIDTH, HIDDEN, WIDTH]
    weights = [
        numpy_helper.from_array(
            (rng.standard_normal((dims[i], dims[i + 1])) * 0.02).astype(np.float32), f"w{i}"
        )
        for i in range(4)
    ]
    names = ["x", "h0", "h1", "h2", "y"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", [names[i], f"w{i}"], [names[i + 1]]) for i in range(4)],
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, WIDTH])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def weights_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("weights") / "weights.onnx")


def project(root: Path, model: Path, replicas: int) -> Path:
    yaml = (
        "- kind: deployment\n  name: mem\n- kind: api\n  name: weights\n  onnx:\n    model: weights.onnx\n"
        f"  compute:\n    min_replicas: {replicas}\n    max_replicas: {replicas}\n"
    )
    make_project(root, yaml)
    os.link(model, root / "weights.onnx")  # the same file: no second 128 MiB on disk
    return root


def serve_ready(serve: Serve, root: Path, replicas: int) -> Server:
    server = serve(root)

    def ready() -> bool:
        info = requests.get(f"{server.url}/mem/weights", timeout=10).json()
        return bool(info.get("replicas", {}).get("ready") == replicas)

    wait_for(ready, 180, f"{replicas} ready replicas")

    def round_of_requests() -> None:
        threads = [threading.Thread(target=lambda: predict(server)) for _ in range(2 * replicas)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def all_touched() -> bool:
        round_of_requests()
        return all(weights_resident(pid) for pid in replica_pids(server.process.pid))

    # every replica answers some requests, so each has touched the weights: rounds of
    # concurrent requests until each has (which replica takes a request is the queue's choice)
    for _ in range(3):
        round_of_requests()
    wait_for(all_touched, 120, "every replica to have run the model")
    return server


def weights_resident(pid: int) -> bool:
    """Whether a replica holds the shared weights file in memory: it maps it lazily, so only
    running the model brings the pages in. A plain load (no such mapping) holds them from the start."""
    mapped = [rss for path, (rss, _) in smaps(pid)[1].items() if path.endswith("/weights.bin")]
    return not mapped or sum(mapped) > 0.9 * WEIGHTS_MIB


def predict(server: Server) -> list[float]:
    answer = server.post("/mem/weights", [SAMPLE])
    assert answer.status_code == 200, answer.text
    return list(answer.json()[0][0])


def smaps(pid: int) -> tuple[float, dict[str, tuple[float, float]]]:
    """A process's PSS (MiB) and, per mapped file, its (RSS, PSS) in MiB."""
    files: dict[str, tuple[float, float]] = {}
    current = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)  # a path may hold spaces (a TMPDIR's, under tmp_path)
        if "-" in head[0] and ":" not in head[0]:  # a mapping's header: address range ... path
            current = head[5] if len(head) > 5 else ""
        elif head[0] in ("Rss:", "Pss:") and current:
            rss, pss = files.get(current, (0.0, 0.0))
            value = int(head[1]) / 1024
            files[current] = (rss + value, pss) if head[0] == "Rss:" else (rss, pss + value)
    total = Path(f"/proc/{pid}/smaps_rollup").read_text().split("Pss:")[1].split()[0]
    return int(total) / 1024, files


def test_replicas_share_one_copy_of_the_weights(
    serve: Serve, weights_model: Path, tmp_path: Path, inferd_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INFERD_SHARE_WEIGHTS", raising=False)
    one = serve_ready(serve, project(tmp_path / "one", weights_model, 1), 1)
    (single,) = replica_pids(one.process.pid)
    single_pss, _ = smaps(single)
    shared_answer = predict(one)
    one.stop()

    three = serve_ready(serve, project(tmp_path / "three", weights_model, 3), 3)
    replicas = replica_pids(three.process.pid)
    assert len(replicas) == 3
    measured = [smaps(pid) for pid in replicas]
    cache = str(inferd_home / "cache" / "shared")
    mapped = [{path: use for path, use in files.items() if path.startswith(cache)} for _, files in measured]
    # each replica maps the same weights file of inferd's cache, with all the weights resident...
    assert all(len(files) == 1 for files in mapped) and len({*mapped[0], *mapped[1], *mapped[2]}) == 1
    assert all(rss > 0.9 * WEIGHTS_MIB for files in mapped for rss, _ in files.values())
    # ...held once between them: their shares of it add up to one copy
    assert sum(pss for files in mapped for _, pss in files.values()) < 1.2 * WEIGHTS_MIB
    # and three replicas in all hold well under three times one
    assert sum(total for total, _ in measured) < 2.3 * single_pss
    assert predict(three) == shared_answer

    # the unshared path (INFERD_SHARE_WEIGHTS=0) gives the very same answers
    monkeypatch.setenv("INFERD_SHARE_WEIGHTS", "0")
    plain = serve_ready(serve, project(tmp_path / "plain", weights_model, 1), 1)
    (plain_pid,) = replica_pids(plain.process.pid)
    assert not any(path.startswith(cache) for path in smaps(plain_pid)[1])
    assert predict(plain) == shared_answer


def small_external_model(folder: Path, seed: int) -> Path:
    """x[n, 256] -> MatMul -> Add -> y; its weights (256 KiB) in a file of their own beside it."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((256, 256)).astype(np.float32)
    bias = rng.standard_normal(256).astype(np.float32)  # used as it is in the file (not packed)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 256])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "small.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="small.data", size_threshold=0)
    return path


def test_weights_rewritten_in_place_under_a_serving_replica_do_not_crash_it(
    serve: Serve, tmp_path: Path
) -> None:
    # Was: a model under 16 MiB loaded the plain way, and onnxruntime maps external data files:
    # `inferd serve` maps the user's own file, so the weights re-exported over it (`cp`, a writer
    # that truncates first) killed every replica with SIGBUS on its next request (503s). The
    # replica maps inferd's copy of them, which nobody writes.
    root = make_project(
        tmp_path / "small",
        "- kind: deployment\n  name: small\n- kind: api\n  name: ext\n  onnx:\n    model: small.onnx\n",
    )
    model = small_external_model(root, seed=0)
    server = serve(root)
    rows = [np.linspace(-1, 1, 256).tolist()]
    before = server.post("/small/ext", rows)
    assert before.status_code == 200, before.text
    (replica,) = replica_pids(server.process.pid)
    retrained = small_external_model(tmp_path / "retrained", seed=1).with_name("small.data")
    with (root / "small.data").open("r+b") as data:  # what `cp retrained/small.data .` does
        data.truncate(0)
        data.flush()
        os.fsync(data.fileno())
        data.write(retrained.read_bytes())
    after = server.post("/small/ext", rows)
    assert after.status_code == 200, after.text
    assert after.json() == before.json() and replica_pids(server.process.pid) == {replica}
    assert model.stat().st_size < 1024  # the weights were in the data file only
