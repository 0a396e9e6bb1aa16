"""The router's V2 and TF Serving paths over a fake catalog (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from inferd.engine.ray import routes
from inferd.replica import messages

INFO = {
    "platform": "onnx_onnxv1",
    "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}],
}


class FakeCatalog:
    def __init__(self, apis: dict[str, dict[str, Any]], errors: dict[str, str] | None = None) -> None:
        self.apis = apis
        self.errors = errors or {}
        self.forwarded: list[tuple[str, bytes, bytes]] = []

    async def names(self) -> list[str]:
        return sorted(self.apis)

    async def info(self, name: str) -> dict[str, Any] | None:
        return self.apis.get(name)

    async def error(self, name: str) -> str | None:
        return self.errors.get(name)

    async def forward(self, name: str, kind: bytes, body: bytes) -> tuple[int, bytes, int]:
        self.forwarded.append((name, kind, body))
        return 200, b'{"ok":1}', 7 if kind == messages.V2_INFER_BINARY else 0


def v2(
    catalog: FakeCatalog, method: str, path: str, header: str | None = None, body: bytes = b""
) -> routes.Answer:
    return asyncio.run(routes.v2_route(catalog, method, path, header, body))


def tf(catalog: FakeCatalog, method: str, path: str, body: bytes = b"") -> routes.Answer:
    return asyncio.run(routes.tfserving_route(catalog, method, path, body))


def test_v2_metadata_health_and_listing() -> None:
    catalog = FakeCatalog({"classifier": INFO, "loading": {}})
    assert orjson.loads(v2(catalog, "GET", "/v2").body)["name"] == "inferd"
    assert v2(catalog, "POST", "/v2").status == 405
    assert v2(catalog, "GET", "/v2/health/live").status == 200
    assert v2(catalog, "GET", "/v2/health/ready").status == 503  # "loading" has no replica yet
    assert orjson.loads(v2(catalog, "GET", "/v2/models").body) == {"models": ["classifier", "loading"]}
    assert orjson.loads(v2(catalog, "POST", "/v2/repository/index").body) == [
        {"name": "classifier", "version": "1", "state": "READY"},
        {"name": "loading", "version": "1", "state": "UNAVAILABLE"},
    ]
    meta = orjson.loads(v2(catalog, "GET", "/v2/models/classifier/versions/1").body)
    assert meta["inputs"][0]["datatype"] == "FP32" and meta["platform"] == "onnx_onnxv1"
    assert v2(catalog, "GET", "/v2/models/classifier/versions/2").status == 404
    assert v2(catalog, "GET", "/v2/models/loading").status == 503
    config = orjson.loads(v2(catalog, "GET", "/v2/models/classifier/config").body)
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
    assert config["backend"] == "onnxruntime" and config["max_batch_size"] == 0
    assert v2(catalog, "GET", "/v2/models/loading/config").status == 503
    assert v2(catalog, "GET", "/v2/models/loading/ready").status == 503
    assert v2(catalog, "GET", "/v2/models/nothing").status == 404
    assert v2(catalog, "GET", "/v2/elsewhere").status == 404


def test_v2_infer_is_forwarded_with_the_binary_header() -> None:
    catalog = FakeCatalog({"classifier": INFO})
    assert v2(catalog, "GET", "/v2/models/classifier/infer").status == 405
    assert v2(catalog, "POST", "/v2/models/classifier/infer", body=b"{}").status == 200
    binary = v2(catalog, "POST", "/v2/models/classifier/infer", header="2", body=b"{}xx")
    assert binary.headers["Inference-Header-Content-Length"] == "7"
    assert catalog.forwarded[0] == ("classifier", messages.V2_INFER, b"{}")
    assert catalog.forwarded[1] == ("classifier", messages.V2_INFER_BINARY, messages.LENGTH.pack(2) + b"{}xx")
    assert v2(catalog, "POST", "/v2/models/classifier/infer", header="x").status == 400


def test_tfserving_status_metadata_and_verbs() -> None:
    catalog = FakeCatalog({"classifier": INFO})
    assert orjson.loads(tf(catalog, "GET", "/v1/models").body) == {"models": ["classifier"]}
    status = orjson.loads(tf(catalog, "GET", "/v1/models/classifier").body)
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    meta = orjson.loads(tf(catalog, "GET", "/v1/models/classifier/metadata").body)
    assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]
    assert tf(catalog, "POST", "/v1/models/classifier:predict", b"{}").status == 200
    assert tf(catalog, "POST", "/v1/models/classifier/versions/1:classify", b"{}").status == 200
    assert [kind for _, kind, _ in catalog.forwarded] == [messages.TF_PREDICT, messages.TF_CLASSIFY]
    assert tf(catalog, "GET", "/v1/models/classifier:predict").status == 405
    assert tf(catalog, "POST", "/v1/models/classifier:explode").status == 404
    assert tf(catalog, "GET", "/v1/models/classifier/versions/9").status == 404
    assert tf(catalog, "GET", "/v1/models/classifier/labels/stable").status == 400  # none configured
    assert tf(catalog, "POST", "/v1/models/classifier:explain", b"{}").status == 501
    assert tf(catalog, "GET", "/v1/models/nothing").status == 404


def test_a_python_predictor_refuses_tensors_as_the_gateway_does() -> None:
    catalog = FakeCatalog({"echo": {"model_format": "predictor", "endpoint": "/pyd/echo", "inputs": None}})
    message = (
        "api 'echo' is a Python predictor: it answers JSON at POST /pyd/echo, not V2 or TF Serving tensors"
    )
    for answer in (
        v2(catalog, "POST", "/v2/models/echo/infer", body=b"{}"),
        tf(catalog, "POST", "/v1/models/echo:predict", b"{}"),
    ):
        assert (answer.status, orjson.loads(answer.body)) == (400, {"error": message})
    assert catalog.forwarded == []


def test_an_api_whose_replicas_failed_to_start_is_end_with_its_error_as_locally() -> None:
    # It said LOADING with error_code OK, so a client waiting for AVAILABLE waited for ever.
    why = "init in predictor.py failed: RuntimeError: cannot load the weights"
    catalog = FakeCatalog({"broken": {}, "loading": {}}, {"broken": why})
    (version,) = orjson.loads(tf(catalog, "GET", "/v1/models/broken").body)["model_version_status"]
    assert version == {
        "version": "1",
        "state": "END",
        "status": {"error_code": "UNAVAILABLE", "error_message": why},
    }
    (loading,) = orjson.loads(tf(catalog, "GET", "/v1/models/loading").body)["model_version_status"]
    assert loading["state"] == "LOADING" and loading["status"]["error_code"] == "OK"
