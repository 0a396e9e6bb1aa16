"""ONNX models with onnxruntime."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inferd.errors import InputError, LoadError
from inferd.runtimes.base import TensorSpec, refused_run, utf8_path
from inferd.runtimes.devices import CPU, Devices, onnx_provider_in_use, onnx_providers

log = logging.getLogger("inferd.replica")

# onnxruntime type strings -> numpy dtypes (strings are object arrays of str).
ONNX_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
}

# The map inputs onnxruntime's Python API builds from a dict: it reads every value as a float
# (map(string,tensor(double)) and the rest are refused by the model whatever a client sends).
FED_MAPS = frozenset({"map(string,tensor(float))", "map(int64,tensor(float))"})


def fed_from_python(type_name: str) -> bool:
    """Whether onnxruntime's Python API can feed an input of this type: a tensor numpy holds, a
    map of floats, a sequence of such tensors, or an optional one of those."""
    if type_name.startswith("optional("):
        return fed_from_python(type_name[len("optional(") : -1])
    if type_name.startswith("seq("):
        return type_name[len("seq(") : -1] in ONNX_TO_NUMPY
    return type_name in ONNX_TO_NUMPY or type_name in FED_MAPS


# What onnxruntime says when a StringNormalizer's locale (en_US.UTF-8 when the node names none,
# as scikit-learn's text pipelines exported by skl2onnx do) is not installed, as in slim images.
LOCALE_FAILURE = "Failed to construct locale with name"
FALLBACK_LOCALE = "C.UTF-8"  # built into glibc: Unicode case mapping without a language pack
# Where onnxruntime finds the external data files of a model given as bytes.
EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"


def with_available_locale(model_path: Path) -> bytes:
    """The model with its StringNormalizer nodes on ``FALLBACK_LOCALE`` (they lower- or upper-case
    text the same way), for a machine without the locale they name; needs the ``onnx`` package."""
    import onnx
    from onnx import helper

    model = onnx.load(str(model_path), load_external_data=False)
    graphs = [model.graph]
    for graph in graphs:
        for node in graph.node:
            graphs.extend(attribute.g for attribute in node.attribute if attribute.HasField("g"))
            if node.op_type == "StringNormalizer":
                named = [a.s.decode() for a in node.attribute if a.name == "locale"] or ["en_US.UTF-8"]
                kept = [attribute for attribute in node.attribute if attribute.name != "locale"]
                del node.attribute[:]
                node.attribute.extend([*kept, helper.make_attribute("locale", FALLBACK_LOCALE)])
                log.warning(
                    "%s: this machine has no locale %s for StringNormalizer '%s'; using %s (install "
                    "the locale to use it)",
                    model_path.name,
                    named[0],
                    node.name,
                    FALLBACK_LOCALE,
                )
    return bytes(model.SerializeToString())


def release_freed_memory() -> None:
    """Give the heap pages freed while loading back to the system (glibc's ``malloc_trim``).

    onnxruntime reads each weight onto the heap and frees it once a mapped or pre-packed copy
    replaces it (and the model's parsed bytes once the session is built); the C allocator keeps
    such pages for later, so without this every replica held up to the model's size of freed
    memory of its own, measured in tens of MiB, shared weights or not. Not glibc: nothing to do.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return
    trim(0)


def _spec(arg: Any) -> TensorSpec:
    # optional(tensor(float)) holds a float tensor or nothing: a client sends floats or leaves it out;
    # seq(tensor(float)) holds float tensors, a client sends a list of them
    element = (
        arg.type[arg.type.index("(") + 1 : -1] if arg.type.startswith(("optional(", "seq(")) else arg.type
    )
    dtype = ONNX_TO_NUMPY.get(element, np.dtype(object))
    raw = arg.shape
    shape = None if raw is None else tuple(d if isinstance(d, int) and d >= 0 else None for d in raw)
    if arg.type.startswith("seq("):  # onnxruntime says [] for any sequence: a list of any length
        shape = (None,)
    names = None
    if raw is not None and any(isinstance(d, str) and d for d in raw):
        names = tuple(d if isinstance(d, str) and d else None for d in raw)
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape, type_name=arg.type, dim_names=names)


def _unknown_ranks(
    model_path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The specs with ``shape=None`` for tensors whose rank the model leaves open.

    onnxruntime gives such a tensor the shape ``[]``, as it does a scalar, so every array but a
    scalar was refused for an input that takes any; the model file tells them apart (read only
    for a model with a scalar-looking input, and only with the ``onnx`` package).
    """
    try:
        import onnx
    except ImportError:
        return inputs, outputs
    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as exc:  # onnxruntime read it: keep its view
        log.warning("%s: could not read which tensors have an open rank: %s", model_path.name, exc)
        return inputs, outputs
    open_rank = {
        info.name
        for info in [*graph.input, *graph.output]
        if info.type.HasField("tensor_type") and not info.type.tensor_type.HasField("shape")
    }

    def opened(specs: list[TensorSpec]) -> list[TensorSpec]:
        return [replace(s, shape=None) if s.name in open_rank and s.shape == () else s for s in specs]

    return opened(inputs), opened(outputs)


def _text(item: Any) -> Any:
    return item.decode("utf-8") if isinstance(item, bytes) else item


def _texts(name: str, value: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``value`` with its bytes made text: onnxruntime turns bytes into their repr ("b'...'"),
    and TF Serving's {"b64": ...} may stand anywhere among plain strings."""
    if value.dtype != object or not any(isinstance(item, bytes) for item in value.flat):
        return value
    try:
        texts: np.ndarray[Any, Any] = np.vectorize(_text, otypes=[object])(value)
        return texts
    except UnicodeDecodeError:  # replaced by U+FFFD, the model would get other text
        raise InputError(
            f"input '{name}' holds bytes that are not UTF-8 text, and onnxruntime's string inputs take text"
        ) from None


class OnnxRuntime:
    """An ``onnxruntime.InferenceSession`` on one model file, sized for one request at a time."""

    platform = "onnx_onnxv1"

    def __init__(
        self, model_path: Path, threads: int = 1, devices: Devices | None = None, prepack: bool = True
    ) -> None:
        devices = devices or Devices()
        options = ort.SessionOptions()
        # A replica runs one request at a time and replicas scale out across cores, so one
        # thread per session avoids oversubscribing the machine.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not prepack:  # a shared copy with dequantized weights (``onnx_shared``)
            options.add_session_config_entry("session.disable_prepacking", "1")
        if devices.gpus and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu[cuda,cudnn] installs CUDA and cuDNN as wheels; load them from there.
            try:
                ort.preload_dlls()
            except Exception as exc:  # libraries from the system may still do
                log.warning("onnxruntime could not preload the CUDA libraries: %s", exc)
        providers = onnx_providers(ort.get_available_providers(), devices)
        with contextlib.ExitStack() as opened:  # a folder's descriptor, while the session loads
            model: str | bytes = utf8_path(model_path, opened)
            try:
                try:
                    self.session = ort.InferenceSession(model, sess_options=options, providers=providers)
                except Exception as exc:
                    if LOCALE_FAILURE not in str(exc) or importlib.util.find_spec("onnx") is None:
                        raise
                    model = with_available_locale(model_path)
                    # Loaded from memory, its external data files are looked for beside the model, not
                    # in the working directory (nothing is written: the weights stay where they are).
                    folder = utf8_path(model_path.resolve().parent, opened)
                    options.add_session_config_entry(EXTERNAL_DATA_FOLDER, folder)
                    self.session = ort.InferenceSession(model, sess_options=options, providers=providers)
                active = self.session.get_providers()
            except Exception as exc:
                if providers == [CPU]:
                    raise
                # Some onnxruntime versions raise when a GPU provider cannot start: same as dropping it.
                log.warning("onnxruntime could not start %s: %s", providers[0], exc)
                active = []
            self.device = onnx_provider_in_use(providers, active, devices)
            if not active:  # allowed to fall back (or it raised): the CPU it is
                self.session = ort.InferenceSession(model, sess_options=options, providers=[CPU])
            self._input_args = self.session.get_inputs()
            unfed = [arg for arg in self._input_args if not fed_from_python(arg.type)]
            if unfed:  # every request would fail in the model (or be read as text): say so once, now
                raise LoadError(
                    f"input '{unfed[0].name}' of {model_path.name} is {unfed[0].type}, which onnxruntime's "
                    "Python API cannot feed (it takes tensors numpy holds, maps of float values, and "
                    "sequences of tensors): export the model with another input type"
                )
            self._output_args = self.session.get_outputs()
            self.inputs = [_spec(arg) for arg in self._input_args]
            self.outputs = [_spec(arg) for arg in self._output_args]
        if any(spec.shape == () and spec.type_name.startswith("tensor(") for spec in self.inputs):
            self.inputs, self.outputs = _unknown_ranks(model_path, self.inputs, self.outputs)
        self._text_inputs = any(spec.dtype == object for spec in self.inputs)
        self._text_sequences = {
            spec.name for spec in self.inputs if spec.type_name.startswith("seq(") and spec.dtype == object
        }
        # Map inputs (skl2onnx's DictVectorizer) arrive as a dict held in a 0-d object array, and
        # sequence inputs as a list of arrays.
        self._map_inputs = [spec.name for spec in self.inputs if spec.type_name.startswith(("map(", "seq("))]
        self._run = self.session.run
        # A dimension the model leaves free (unnamed, or a rank it does not give): the client's
        # sizes there can be what a node cannot run on (node_refusal).
        self._free_dimensions = any(
            spec.shape is None or any(type(dim) is not int for dim in spec.shape) for spec in self.inputs
        )
        self._output_names = [arg.name for arg in self._output_args]
        native = getattr(self.session, "_sess", None)
        if self.device == CPU and native is not None and hasattr(native, "run"):
            # The Python wrapper's run() checks what the converter already guarantees (every
            # input present) and retries failed GPU providers: on the CPU, call the session
            # itself (measured: a fifth of the replica's Python time per request on iris).
            self._run = lambda _, feeds: native.run(self._output_names, feeds, None)
        release_freed_memory()

    def handler_signature(self, stage: str) -> Any:
        # Cortex handed pre_inference get_inputs() and post_inference get_outputs().
        return self._input_args if stage == "pre" else self._output_args

    def run(self, inputs: dict[str, np.ndarray[Any, Any]]) -> list[Any]:
        if self._text_inputs:
            for name, value in inputs.items():
                if name in self._text_sequences:  # a list of string tensors, held in a 0-d array
                    held = np.empty((), dtype=object)
                    held[()] = [_texts(name, item) for item in value.item()]
                    inputs[name] = held
                elif name not in self._map_inputs:
                    inputs[name] = _texts(name, value)
        try:
            if self._map_inputs:
                feeds: dict[str, Any] = dict(inputs)
                for name in self._map_inputs:
                    value = feeds[name]
                    feeds[name] = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
                return list(self._run(None, feeds))
            return list(self._run(None, inputs))
        except Exception as exc:
            invalid = type(exc).__name__ == "InvalidArgument"  # a Gather's index past its table
            refusal = (invalid or self._free_dimensions) and node_refusal(str(exc), inputs, invalid)
            if refusal:
                raise InputError(refusal) from None
            raise

    def output_arrays(self, prediction: Any) -> dict[str, Any]:
        # Non-tensor outputs (a ZipMap's list of maps) stay as they are.
        return {spec.name: value for spec, value in zip(self.outputs, prediction, strict=True)}


_NODE_FAILED = "Non-zero status code returned while running "
_SHAPE_WORDS = ("broadcast", "shape", "dimension", "axis", "axes", "reshape", "channel")
# A complaint nested in another: all before the innermost ``[ONNXRuntimeError] : 1 : FAIL : ``.
_NESTED = re.compile(r"^.*\[ONNXRuntimeError\] : \d+ : \w+ : ", re.DOTALL)
# Where onnxruntime's check stands: ``file.cc:57 Function``, or the path and the function as the
# compiler prints it (``void* onnxruntime::BFCArena::Alloc(size_t, bool) const [with T = int]``).
_PLACE = re.compile(
    r"^\S*\.(?:h|cc|cpp|cu):\d+\s+"
    r"(?:[^()]*?::[^()\s]*\([^()]*\)(?:\s+const)?(?:\s+\[with [^\]]*\])?|\S+)\s+"
)


def node_refusal(said: str, inputs: dict[str, Any], invalid: bool = False) -> str | None:
    """The client's error for a node that could not run on the sizes the client gave dimensions
    the model leaves free (two unnamed ones that an Add needs equal: onnxruntime's check fails
    inside the node) or on what onnxruntime calls an invalid argument (``invalid``: an index
    past a Gather's table), or ``None`` for any other failure (the model's own: a 500).
    onnxruntime's source path and the C++ condition that failed are left out: the client could
    do nothing with ``/onnxruntime_src/.../element_wise_ops.h:563 void onnxruntime::Broad...``."""
    if _NODE_FAILED not in said:
        return None
    node, _, detail = said.partition(_NODE_FAILED)[2].partition(" node.")
    message = detail.partition("Status Message: ")[2] or detail
    message = _NESTED.sub("", message)
    if " was false. " in message:
        message = message.partition(" was false. ")[2]
    message = _PLACE.sub("", message.strip())
    if not message or not (invalid or any(word in message.lower() for word in _SHAPE_WORDS)):
        return None
    return refused_run(node, message, inputs)
