"""TensorFlow SavedModels, loaded in-process (tensorflow-cpu, or TensorFlow with CUDA on GPUs).

The handler's ``signature`` is the SavedModel's SignatureDef map as plain dicts with
protobuf-JSON (camelCase) keys, read from ``saved_model.pb`` exactly as Cortex handed it over
(Cortex got it from TF Serving's GetModelMetadata); internal entries such as
``__saved_model_init_op`` are left out.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from inferd.errors import InputError, LoadError
from inferd.runtimes.base import TensorSpec, refused_run, utf8_path
from inferd.runtimes.devices import Devices, configure_tensorflow
from inferd.runtimes.startup_notes import held_startup_notes
from inferd.storage.layout import find_saved_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with held_startup_notes():
    import tensorflow as tf
from google.protobuf.json_format import MessageToDict
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

# Cortex's choice when signature_key is unset and there are several: "predict"; inferd also
# recognises TF2's "serving_default".
PREFERRED_KEYS = ("predict", "serving_default")


def read_signature_map(model_dir: Path) -> dict[str, Any]:
    """The SignatureDef map of ``model_dir/saved_model.pb`` as dicts, internal keys left out."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((model_dir / "saved_model.pb").read_bytes())
    if not saved.meta_graphs:
        raise LoadError(f"{model_dir}/saved_model.pb holds no MetaGraph")
    signatures = saved.meta_graphs[0].signature_def
    return {key: MessageToDict(signatures[key]) for key in sorted(signatures) if not key.startswith("__")}


def choose_signature(keys: list[str], wanted: str | None) -> str:
    """Cortex's rule: ``signature_key``, else the only one, else ``predict`` (or serving_default)."""
    if wanted is not None:
        if wanted not in keys:
            raise LoadError(f"signature_key {wanted!r} is not in the SavedModel (it has: {', '.join(keys)})")
        return wanted
    if len(keys) == 1:
        return keys[0]
    for key in PREFERRED_KEYS:
        if key in keys:
            return key
    raise LoadError(
        "the SavedModel has several signatures and none is called 'predict' or "
        f"'serving_default'; set tensorflow.signature_key to one of: {', '.join(keys)}"
    )


def _spec(name: str, info: dict[str, Any]) -> TensorSpec:
    type_name = info.get("dtype", "DT_INVALID")
    enum = tf.dtypes.as_dtype(types_pb2.DataType.Value(type_name))
    dtype = np.dtype(object) if enum == tf.string else np.dtype(enum.as_numpy_dtype)
    tensor_shape = info.get("tensorShape", {})
    shape: tuple[int | None, ...] | None
    if tensor_shape.get("unknownRank"):
        shape = None
    else:
        dims = [int(dim.get("size", -1)) for dim in tensor_shape.get("dim", [])]
        shape = tuple(None if size < 0 else size for size in dims)
    return TensorSpec(name=name, dtype=dtype, shape=shape, type_name=type_name)


class TensorFlowRuntime:
    """One SavedModel signature, called in-process."""

    platform = "tensorflow_savedmodel"

    def __init__(
        self, model_path: Path, signature_key: str | None, threads: int = 1, devices: Devices | None = None
    ) -> None:
        try:
            self.device = configure_tensorflow(tf.config, devices or Devices())
        except RuntimeError:  # TensorFlow already placed something in this process: keep its set-up
            gpus = tf.config.get_visible_devices("GPU")
            self.device = ",".join(gpu.name.removeprefix("/physical_device:") for gpu in gpus) or "CPU"
        model_dir = find_saved_model(model_path)
        self.signature_map = read_signature_map(model_dir)
        if not self.signature_map:
            raise LoadError(f"{model_dir}: the SavedModel has no serving signature")
        self.signature_key = choose_signature(list(self.signature_map), signature_key)
        chosen = self.signature_map[self.signature_key]
        self.inputs = [_spec(n, i) for n, i in sorted(chosen.get("inputs", {}).items())]
        self.outputs = [_spec(n, i) for n, i in sorted(chosen.get("outputs", {}).items())]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised in this process
            pass
        with contextlib.ExitStack() as opened:  # a folder's descriptor, while it loads
            self._loaded = tf.saved_model.load(utf8_path(model_dir, opened))
        self._function = self._loaded.signatures[self.signature_key]

    def signature_specs(self, key: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Input and output specs of any signature of the SavedModel (TF Serving's signature_name)."""
        if key not in self.signature_map:
            raise InputError(
                f"signature {key!r} is not in the model (it has: {', '.join(self.signature_map)})"
            )
        chosen = self.signature_map[key]
        return (
            [_spec(n, i) for n, i in sorted(chosen.get("inputs", {}).items())],
            [_spec(n, i) for n, i in sorted(chosen.get("outputs", {}).items())],
        )

    def run_signature(
        self, key: str, inputs: dict[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        try:
            outputs = self._loaded.signatures[key](**tensors)
        except tf.errors.InvalidArgumentError as exc:
            raise InputError(refused_run(*_node_complaint(str(exc)), inputs)) from None
        return {name: _tensor(tensor.numpy()) for name, tensor in sorted(outputs.items())}

    def handler_signature(self, stage: str) -> Any:
        return self.signature_map

    def run(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        try:
            outputs = self._function(**tensors)
        except tf.errors.InvalidArgumentError as exc:
            raise InputError(refused_run(*_node_complaint(str(exc)), inputs)) from None
        # In name order, as self.outputs: TensorFlow's order follows the process's string hashes,
        # so two replicas of one model answered in different orders.
        return {name: tensor.numpy() for name, tensor in sorted(outputs.items())}

    def output_arrays(self, prediction: Any) -> dict[str, Any]:
        return {name: _tensor(value) for name, value in prediction.items()}


def _tensor(value: Any) -> np.ndarray[Any, Any]:
    """A 0-d output as the array it is: TensorFlow's ``numpy()`` gives a NumPy scalar (a float32,
    or ``bytes`` for a string), which the tensor protocols could not encode (a 500)."""
    if isinstance(value, np.ndarray):
        return value
    return np.array(value, dtype=object if isinstance(value, bytes | str) else None)


# The tag that follows an operation's complaint: ``[[{{node add}}]]``, or, for an operation in
# a function TensorFlow kept apart (a lambda made a tf.function), ``[[{{function_node
# __inference_<lambda>_39}}{{node add}}]]``; then ``[Op:__inference_signature_wrapper_45]``.
_NODE_TAG = re.compile(r"\[\[(?:\{\{function_node [^}]*\}\})*\{\{node ([^}]+)\}\}\]\]")
# What TensorFlow writes around the complaint of an operation run on its own (eagerly), on one
# line: ``{{function_node __wrapped__AddV2_device_/job:...}} <complaint> [Op:AddV2] name: ``.
_AROUND = re.compile(r"^(?:\{\{function_node [^}]*\}\}\s*)+|\s*\[Op:[^\]]*\].*$")
_NO_STACK = "<stack traces unavailable>"


def _node_complaint(said: str) -> tuple[str, str]:
    """(node, message) of TensorFlow's ``InvalidArgumentError`` from running a signature: the
    operation refused what it was given (``Incompatible shapes: [3] vs. [2]`` in an add,
    ``indices[0] = 7 is not in [0, 3)`` in a gather), which the client sent. Its text around that
    line ("Graph execution error", a stack it could not show, the function's internal name) is
    left out; it was a 500 'the model failed' of eight lines. The complaint is what stands
    between the stack and the tag (text it quotes from the client can hold line breaks), on one
    line."""
    tags = list(_NODE_TAG.finditer(said))
    if tags:
        tag = tags[-1]
        before = said[: tag.start()]
        _, no_stack, complaint = before.partition(_NO_STACK)
        if not no_stack:  # a stack it could show: the line before the tag
            complaint = next((line for line in reversed(before.splitlines()) if line.strip()), "")
        complaint = " ".join(line.strip() for line in complaint.splitlines() if line.strip())
        if complaint:
            return tag.group(1), complaint
    lines = [line.strip() for line in said.splitlines()]
    last = next((line for line in reversed(lines) if line), said)
    return "", _AROUND.sub("", last) or last
