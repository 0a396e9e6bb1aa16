"""``scripts/gpu_check.py``: honest about a machine without GPUs, and its steps run end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inferd.engine.gpus import GpuPool
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"


def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(600)
def test_it_checks_nothing_and_says_so_without_a_gpu() -> None:
    result = run(timeout=540)
    if GpuPool.discover().gpus:  # a GPU machine: the real check must pass
        assert result.returncode == 0, result.stderr
        assert "gpu_check: passed" in result.stdout
    else:
        assert result.returncode == 2
        assert "gpu_check: no GPU on this machine (" in result.stderr
        assert "nothing was checked" in result.stderr


@pytest.mark.tensorflow
@pytest.mark.timeout(600)
def test_the_rehearsal_runs_every_step_on_the_cpu() -> None:
    result = run("--rehearse", timeout=540)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("onnx iris", "onnx matmul", "tensorflow iris"):
        assert f"ok   {step}: 64 answers equal the CPU's" in result.stdout
    assert "rehearsal on the CPU passed (nothing about GPUs was checked)" in result.stdout
