"""The runtime interface every model format implements."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("inferd.replica")


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: numpy dtype and shape (``None`` for a dynamic dimension).

    ``shape`` is ``None`` when even the rank is unknown. ``type_name`` is the framework's
    own spelling of the type (``tensor(float)``, ``DT_FLOAT``), shown to users. ``dim_names``
    holds the names ONNX gives dynamic dimensions (``batch``), when it gives any: inputs that
    name a dimension alike must agree on its size.
    """

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...] | None
    type_name: str
    dim_names: tuple[str | None, ...] | None = None

    @property
    def optional(self) -> bool:
        """An input a client may leave out: ONNX's ``optional(tensor(float))``, whose ``dtype``
        is its element's."""
        return self.type_name.startswith("optional(")

    def describe(self) -> dict[str, Any]:
        """JSON-friendly view: ``{"name", "dtype", "shape"}`` with -1 for dynamic dims."""
        shape = None if self.shape is None else [-1 if d is None else d for d in self.shape]
        described: dict[str, Any] = {"name": self.name, "dtype": self.dtype.name, "shape": shape}
        described["type"] = self.type_name
        if self.dim_names is not None:  # ONNX's named dimensions ("batch"), for Cortex's /signature
            described["dim_names"] = list(self.dim_names)
        return described


class Runtime(Protocol):
    """A loaded model. Built once per replica process; ``run`` is called one batch at a time."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    platform: str
    # What the model runs on: onnxruntime's provider (CUDAExecutionProvider), TensorFlow's
    # devices (GPU:0), or CPU.
    device: str

    def handler_signature(self, stage: str) -> Any:
        """What the request handler receives as ``signature`` in ``stage`` (``pre``/``post``)."""
        ...

    def run(self, inputs: dict[str, np.ndarray[Any, Any]]) -> Any:
        """Run the model on inputs already cast to ``self.inputs``; the raw prediction."""
        ...

    def output_arrays(self, prediction: Any) -> dict[str, Any]:
        """The raw prediction as ``{output name: array (or list, for non-tensor outputs)}``."""
        ...


def utf8_path(path: Path, opened: contextlib.ExitStack) -> str:
    """``path`` (a model file or folder) as onnxruntime and TensorFlow take it: UTF-8 text.

    A folder named in another encoding (Latin-1, from an old disk or archive) is reached through
    a descriptor, ``/proc/self/fd/N``: of the folder itself, or of a file's folder (beside which
    onnxruntime reads its external data files); ``opened`` closes it once the model is loaded.
    Was: "incompatible constructor arguments" (onnxruntime's binding, with a dump of its
    arguments) or "UnicodeEncodeError: ... surrogates not allowed" (TensorFlow).
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        if not Path("/proc/self/fd").is_dir():  # Linux's: elsewhere the framework says no
            return text
        folder = os.open(path if path.is_dir() else path.parent, os.O_RDONLY | os.O_DIRECTORY)
        opened.callback(os.close, folder)
        text = f"/proc/self/fd/{folder}" + ("" if path.is_dir() else f"/{path.name}")
    return text


def refused_run(node: str, said: str, inputs: dict[str, Any]) -> str:
    """The client's error for a model that could not run on what the client sent (its runtime's
    complaint ``said``, from the model's node ``node``), naming the shapes that were sent."""
    shapes = ", ".join(
        f"'{name}' {list(value.shape)}"
        for name, value in sorted(inputs.items())
        if isinstance(value, np.ndarray)
    )
    who = f"its {node} node says" if node else "it says"
    if node not in _REFUSED_AT:  # once per node: a client may send such inputs all day
        _REFUSED_AT.add(node)
        log.warning(
            "the model could not run on a client's inputs (%s: %s), answered 400; if every request "
            "is refused so, the model itself may be wrong (logged once per node)",
            node or "the model",
            said,
        )
    return f"the model cannot run on these inputs ({shapes}): {who}: {said}"


# The nodes a refusal was logged for: a model that cannot run on any input (a Reshape to a
# constant that never fits) is answered 400 as the client's, and would show on no 5xx chart.
_REFUSED_AT: set[str] = set()
