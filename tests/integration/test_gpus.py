"""Real replica processes placed on GPUs that a faked driver reports (this machine has none).

What is faked is NVML alone: the engine, the replica processes, the ONNX runtime and HTTP are
the real ones. On a machine with GPUs, ``scripts/gpu_check.py`` checks the rest.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from inferd.config.load import load_project
from inferd.engine.autoscale import Autoscaler
from inferd.engine.capacity import Capacity
from inferd.engine.gpus import Claim, GpuNeed, GpuPool
from inferd.engine.local import LocalEngine
from inferd.engine.state import ApiState, Replica, Version, gpu_claims
from inferd.gateway.app import Gateway
from inferd.replica.handle import ReplicaHandle
from tests.unit.engine.fake_nvml import machine

PROJECT = """\
- kind: deployment
  name: gpus
- kind: api
  name: pair
  predictor:
    path: visible.py
  compute:
    gpu: 1
    min_replicas: 2
    max_replicas: 2
- kind: api
  name: onnx-gpu
  onnx:
    model: iris.onnx
  compute:
    gpu: 1
    cpu_fallback: true
- kind: api
  name: plain
  predictor:
    path: visible.py
- kind: api
  name: more
  predictor:
    path: visible.py
  compute:
    gpu: 1
"""

VISIBLE = """\
import os


def predict(sample, metadata):
    return os.environ.get("CUDA_VISIBLE_DEVICES")
"""


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def wait_until(check: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def scenario(root: Path) -> None:
    gateway = Gateway()
    engine = LocalEngine(gateway, home=root / "home")
    pool = GpuPool.discover(machine(3), environ=False)
    engine.capacity = Capacity(cpus=64.0, memory=1 << 40, gpus=pool)
    gateway.replica_gpus = engine.replica_gpus
    await gateway.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{gateway.ports[0]}"
    try:
        await engine.apply(load_project(root / "project"))
        await wait_until(
            lambda: all(
                engine.describe(f"gpus/{name}")["status"] == "live" for name in ("pair", "onnx-gpu", "plain")
            )
        )
        await wait_until(lambda: engine.describe("gpus/more")["status"] == "compute unavailable")

        # Each GPU replica sees exactly its own device; no device is held twice.
        devices = []
        for name in ("pair", "onnx-gpu"):
            for replica in engine.describe(f"gpus/{name}")["replicas"]:
                seen = environ_of(replica["pid"])["CUDA_VISIBLE_DEVICES"]
                assert [gpu["uuid"] for gpu in replica["gpus"]] == [seen]
                devices.append(seen)
        assert sorted(devices) == sorted(gpu.uuid for gpu in pool.gpus)
        # A replica that asked for no GPU sees none.
        (plain,) = engine.describe("gpus/plain")["replicas"]
        # (asked of the replica: a forked one's /proc/PID/environ is still its zygote's)
        hidden = await asyncio.to_thread(requests.post, f"{base}/gpus/plain", json={})
        assert hidden.json() == ""
        assert "gpus" not in plain

        # The fourth GPU replica does not fit, and the reason says so.
        more = engine.describe("gpus/more")
        assert (
            more["error"]
            == "needs 1 GPU (compute.gpu) per replica; 0 of 3 GPUs are free (other replicas hold them)"
        )

        # onnxruntime here has no CUDA provider: the API allowed the CPU, and says it runs there.
        (onnx,) = engine.describe("gpus/onnx-gpu")["replicas"]
        assert onnx["device"] == "CPUExecutionProvider"
        answer = await asyncio.to_thread(requests.post, f"{base}/gpus/onnx-gpu", json=[[5.1, 3.5, 1.4, 0.2]])
        assert answer.status_code == 200, answer.text
        visible = await asyncio.to_thread(requests.post, f"{base}/gpus/pair", json={})
        assert visible.json() in devices

        # /metrics: memory and utilisation per GPU replica.
        text = (await asyncio.to_thread(requests.get, f"{base}/metrics")).text
        memory = {
            sample.labels["replica"]
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "inferd_replica_gpu_memory_bytes"
        }
        assert memory == {
            r["id"] for name in ("pair", "onnx-gpu") for r in engine.describe(f"gpus/{name}")["replicas"]
        }
    finally:
        await gateway.drain(5)
        await engine.stop()
        await gateway.close()


def test_replicas_get_distinct_devices_and_see_only_theirs(tmp_path: Path, iris_onnx_model: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "cortex.yaml").write_text(PROJECT)
    (project / "visible.py").write_text(VISIBLE)
    shutil.copy(iris_onnx_model, project / "iris.onnx")
    asyncio.run(scenario(tmp_path))


def test_a_retiring_replica_keeps_its_device_until_its_process_exits(tmp_path: Path) -> None:
    pool = GpuPool.discover(machine(1), environ=False)
    (device,) = [gpu.uuid for gpu in pool.gpus]
    (tmp_path / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  predictor:\n    path: p.py\n"
    )
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    (config,) = load_project(tmp_path).apis
    process = subprocess.Popen(["sleep", "60"])
    try:
        state = ApiState(version=Version(id="v1", config=config), desired=1, autoscaler=Autoscaler(1, 5, 60))
        handle = ReplicaHandle("a", "a-1", "v1", events=None)  # type: ignore[arg-type]
        replica = Replica(id="a-1", version="v1", handle=handle, process=process, gpus=Claim((device,)))
        replica.retired = True
        state.replicas.append(replica)
        apis = {"a": state}
        assert gpu_claims(apis) == [Claim((device,))]
        assert pool.assign(gpu_claims(apis), GpuNeed(1)) is None  # the new version waits for the device
    finally:
        process.kill()
        process.wait()
    assert gpu_claims(apis) == []
    assert pool.assign(gpu_claims(apis), GpuNeed(1)) == Claim((device,))


async def rollout(root: Path) -> None:
    gateway = Gateway()
    engine = LocalEngine(gateway, home=root / "home")
    engine.capacity = Capacity(cpus=8.0, memory=1 << 36, gpus=GpuPool.discover(machine(1), environ=False))
    await gateway.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{gateway.ports[0]}/d/a"
    code = root / "project" / "version.py"
    try:
        await engine.apply(load_project(root / "project"))
        await wait_until(lambda: engine.describe("d/a")["status"] == "live")
        # Not the same size: Python reuses the bytecode it wrote for version.py when the source's
        # size and mtime (whole seconds) match, and this edit comes within a second of the load.
        code.write_text("def predict(sample, metadata):\n    return 1 + 1\n")
        await engine.apply(load_project(root / "project"))
        holders: list[int] = []

        def updated() -> bool:
            holders.append(len(gpu_claims(engine.apis)))
            info = engine.describe("d/a")
            return bool(info["up_to_date"] == 1 and info["stale"] == 0)

        await wait_until(updated)
        assert max(holders) == 1  # the old replica gave the device back before the new one got it
        answer = await asyncio.to_thread(requests.post, url, json={})
        assert answer.json() == 2
    finally:
        await gateway.drain(5)
        await engine.stop()
        await gateway.close()


def test_an_update_on_a_full_gpu_replaces_the_replica_never_sharing_the_device(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "cortex.yaml").write_text(
        "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  predictor:\n    path: version.py\n"
        "  compute:\n    gpu: 1\n"
    )
    (project / "version.py").write_text("def predict(sample, metadata):\n    return 1\n")
    asyncio.run(rollout(tmp_path))
