"""Model runtimes: load a model file and run it on named numpy inputs."""

from __future__ import annotations

import sys
from pathlib import Path

from inferd.errors import LoadError
from inferd.runtimes.base import Runtime, TensorSpec
from inferd.runtimes.devices import Devices

# Each format's framework and what its models are called; the extra of inferd that installs it
# has the format's name (pyproject.toml): ``pip install inferd`` alone installs neither. An API
# that asks for a GPU needs the `gpu` extra's CUDA builds instead: the CPU build installed first
# stays beside them (onnxruntime and onnxruntime-gpu, tensorflow-cpu and tensorflow, each pair
# one module).
FRAMEWORKS = {
    "onnx": ("onnxruntime", "ONNX models"),
    "tensorflow": ("tensorflow", "TensorFlow SavedModels"),
}


def _not_installed(model_format: str, exc: ModuleNotFoundError, devices: Devices | None) -> Exception:
    """One sentence for a runtime whose framework is not installed in this Python; ``exc`` as it
    is for any other missing module (one the framework itself imports: its traceback says which)."""
    module, models = FRAMEWORKS[model_format]
    if exc.name != module:
        return exc
    install = f"pip install 'inferd[{model_format}]'"
    if devices is not None and devices.gpus > 0:
        install = "pip install 'inferd[gpu]' (the API asks for a GPU)"
    return LoadError(
        f"{models} need {module}, which is not installed in this Python ({sys.executable}): {install}"
    )


def load_runtime(
    model_format: str, model_path: Path, signature_key: str | None = None, devices: Devices | None = None
) -> Runtime:
    """Load a model with the runtime for ``model_format`` (``onnx`` or ``tensorflow``) on ``devices``.

    Heavy frameworks are imported here, inside the replica, never at CLI start.
    """
    if model_format == "onnx":
        try:
            from inferd.runtimes.onnx import OnnxRuntime
        except ModuleNotFoundError as exc:
            raise _not_installed(model_format, exc, devices) from None
        from inferd.runtimes.onnx_shared import populate, shared_model, sharing_enabled, unpacked
        from inferd.storage.layout import find_onnx_model

        model_path = find_onnx_model(model_path)  # a .zip: the model file inside, unpacked
        devices = devices or Devices()
        # On the CPU, replicas map one copy of a large model's weights (``onnx_shared``); a GPU
        # copies them into its own memory anyway.
        shared = None if devices.gpus or not sharing_enabled() else shared_model(model_path)
        if shared is None:
            return OnnxRuntime(model_path, devices=devices)
        runtime = OnnxRuntime(shared, devices=devices, prepack=not unpacked(shared))
        populate(shared)
        return runtime
    if model_format == "tensorflow":
        try:
            from inferd.runtimes.tensorflow import TensorFlowRuntime
        except ModuleNotFoundError as exc:
            raise _not_installed(model_format, exc, devices) from None

        return TensorFlowRuntime(model_path, signature_key, devices=devices or Devices())
    raise ValueError(f"no runtime for model format {model_format!r}")


__all__ = ["Devices", "Runtime", "TensorSpec", "load_runtime"]
