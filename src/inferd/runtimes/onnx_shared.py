"""Shared ONNX weights: one copy of a model's initializers in memory for every replica.

onnxruntime memory-maps initializers stored as external data (a separate weights file) when it
loads a model, instead of copying them onto its heap. So a replica loads a copy of the user's
model whose weights live in one file of inferd's cache (``$INFERD_HOME/cache/shared/<digest>``,
keyed by the model file's content hash, made once, never touching the user's files), with
pre-packing off (pre-packing copies MatMul weights into buffers of its own): every replica of
the API, and of any API serving the same model, maps the same pages of the page cache. Measured
by ``bench/memory.py``: 4 replicas of a 256 MiB model hold about 1.3x the PSS of one, against 4x.

Models under ``MIN_SHARED_BYTES`` load the plain way (nothing to gain), as does every model when
``INFERD_SHARE_WEIGHTS=0``. A model that cannot be converted (not a valid ONNX file, say) also
loads the plain way, so onnxruntime reports it exactly as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from inferd.storage import CREATED_MARK, cache_dir, file_digest

log = logging.getLogger("inferd.replica")

MIN_SHARED_BYTES = 16 << 20  # a model file smaller than this loads the plain way
ALIGNMENT = 64 << 10  # each tensor starts on a 64 KiB boundary (the most ONNX allows as a gap)
MODEL_NAME = "model.onnx"
WEIGHTS_NAME = "weights.bin"


def sharing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether replicas share ONNX weights (``INFERD_SHARE_WEIGHTS``, on by default)."""
    return environ.get("INFERD_SHARE_WEIGHTS", "1").strip().lower() not in ("0", "false", "no", "off")


def shared_root() -> Path:
    """Where the converted copies live."""
    return cache_dir() / "shared"


def shared_model(model_path: Path, min_bytes: int = MIN_SHARED_BYTES) -> Path | None:
    """The cached copy of ``model_path`` with external weights, made if missing; None: load as is.

    Replicas starting together convert once: the first takes a lock on the copy's digest, the
    others wait for it and find the copy made.
    """
    try:
        if model_path.stat().st_size < min_bytes:
            return None
        digest = file_digest(model_path)[:32]
    except OSError:
        return None  # the plain load reports it
    target = shared_root() / digest
    if (target / MODEL_NAME).is_file():
        return target / MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / MODEL_NAME).is_file():
            return target / MODEL_NAME
        try:
            _convert(model_path, target)
        except Exception as exc:  # not a model onnx can read: onnxruntime will say why
            log.info("weights of %s not shared (%s); loading it the plain way", model_path.name, exc)
            return None
    return target / MODEL_NAME


def _convert(model_path: Path, target: Path) -> None:
    """Write ``model_path`` into ``target`` with every large initializer in one aligned file."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data, set_external_data

    model = onnx.load(str(model_path))  # a model with external data of its own: loaded too
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=WEIGHTS_NAME)
    offset = 0
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        offset = -(-offset // ALIGNMENT) * ALIGNMENT
        size = len(tensor.raw_data)
        set_external_data(tensor, WEIGHTS_NAME, offset=offset, length=size)
        offset += size
    scratch = Path(tempfile.mkdtemp(prefix="tmp", dir=target.parent))
    try:
        onnx.save_model(model, str(scratch / MODEL_NAME))
        (scratch / CREATED_MARK).write_text("")
        for name in (MODEL_NAME, WEIGHTS_NAME):
            with contextlib.suppress(FileNotFoundError):
                (scratch / name).chmod(0o444)  # replicas map these pages: nobody writes them
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
