"""What the Open Inference Protocol (KServe V2) and Triton's extensions say about models: model
metadata, Triton's model configuration and its repository index (JSON, no tensors).
"""

from __future__ import annotations

from typing import Any

import orjson

from inferd.errors import InputError
from inferd.protocols.v2_types import tensor_metadata


def model_metadata(name: str, version: str, info: dict[str, Any]) -> dict[str, Any]:
    """``GET /v2/models/{name}``: platform, inputs and outputs with V2 datatypes."""
    return {
        "name": name,
        "versions": [version],
        "platform": info.get("platform", "python"),
        "inputs": [tensor_metadata(spec) for spec in info.get("inputs") or []],
        "outputs": [tensor_metadata(spec) for spec in info.get("outputs") or []],
    }


def repository_index(body: bytes, models: list[tuple[str, bool]], version: str) -> bytes:
    """Triton's ``POST /v2/repository/index`` (tritonclient's ``get_model_repository_index``):
    each model (name, ready) with its version and state; ``{"ready": true}`` lists the ready ones."""
    try:
        options = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc}") from None
    if not isinstance(options, dict) or not isinstance(options.get("ready", False), bool):
        raise InputError('the request must be an object, {"ready": true|false}')
    return orjson.dumps(
        [
            {"name": name, "version": version, "state": "READY" if ready else "UNAVAILABLE"}
            for name, ready in sorted(models)
            if ready or not options.get("ready")
        ]
    )


BACKENDS = {"onnx_onnxv1": "onnxruntime", "tensorflow_savedmodel": "tensorflow"}


def model_config(name: str, info: dict[str, Any]) -> dict[str, Any]:
    """``GET /v2/models/{name}/config`` (Triton's, read by tritonclient): the metadata in its words.

    ``max_batch_size`` 0 says the dims include the batch dimension (-1 where it varies).
    """
    platform = info.get("platform", "python")

    def tensor(spec: dict[str, Any]) -> dict[str, Any]:
        meta = tensor_metadata(spec)
        kind = "STRING" if meta["datatype"] == "BYTES" else meta["datatype"]
        config = {"name": meta["name"], "data_type": f"TYPE_{kind}", "dims": meta["shape"]}
        if spec.get("type", "").startswith("optional("):  # an ONNX optional input: may be left out
            config["optional"] = True  # Triton's ModelInput.optional
        return config

    return {
        "name": name,
        "platform": platform,
        "backend": BACKENDS.get(platform, "python"),
        "max_batch_size": 0,
        "input": [tensor(spec) for spec in info.get("inputs") or []],
        "output": [tensor(spec) for spec in info.get("outputs") or []],
    }
