"""``scripts/gpu_check.py``: honest about a machine without GPUs, and its steps run end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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


def test_its_help_names_its_exit_codes() -> None:
    """The README's: 0 when all pass, 1 naming the check that failed, 2 without a GPU (the test
    above checks the 2); `--help` said nothing of them."""
    shown = " ".join(run("--help", timeout=60).stdout.split())
    assert (
        "Exits 0 when every check passes, 1 naming the check that failed, 2 when the machine has no GPU."
        in shown
    )


@pytest.mark.tensorflow
@pytest.mark.timeout(600)
def test_the_rehearsal_runs_every_step_on_the_cpu() -> None:
    result = run("--rehearse", timeout=540)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("onnx iris", "onnx matmul", "tensorflow iris"):
        assert f"ok   {step}: 64 answers equal the CPU's" in result.stdout
    assert "rehearsal on the CPU passed (nothing about GPUs was checked)" in result.stdout


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.tensorflow
def test_the_preflight_names_each_runtime_that_cannot_use_a_gpu() -> None:
    import onnxruntime as ort
    import tensorflow as tf

    problems = load_script().preflight(False)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert "onnx" not in problems
    else:
        assert "onnxruntime has no CUDAExecutionProvider" in problems["onnx"]
    if tf.config.list_physical_devices("GPU"):
        assert "tensorflow" not in problems
    else:
        assert "TensorFlow sees no GPU" in problems["tensorflow"]


def test_phases_whose_runtime_cannot_use_the_gpu_are_reported_not_run(tmp_path: Path) -> None:
    problems = {"onnx": "onnxruntime has no CUDAExecutionProvider", "tensorflow": "TensorFlow sees no GPU"}
    failures = load_script().run_checks(tmp_path, 1, False, problems)
    assert failures == [
        "onnx: onnxruntime has no CUDAExecutionProvider",
        "tensorflow: TensorFlow sees no GPU",
        "onnx: not run (onnx cannot use the GPU)",
        "tensorflow: not run (tensorflow cannot use the GPU)",
        "compute unavailable: not run (onnx cannot use the GPU)",
        "gpu_memory sharing: not run (onnx and tensorflow cannot use the GPU)",
    ]
