"""An API's replica on Ray answers the requests at its endpoint as the local gateway does.

Found by sending the same requests to one project served locally and on a Ray cluster: the Ray
side refused a CORS preflight and a HEAD (405), answered Cortex's ``<endpoint>/signature`` 404,
read a body-less ``curl -X POST`` as malformed JSON (400, where the predictor gets ``None``),
took a gzip body for malformed JSON (400, not 415), and ran V2 / TF Serving requests larger
than the API's ``max_body_size`` (the gateway answers 413).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from inferd.config.load import load_project
from inferd.engine.ray.replica import ApiReplica, ProtocolRouter
from inferd.replica import messages
from tests.conftest import example, make_project
from tests.unit.engine.ray.test_replica_paths import CONFIG as PREDICTOR


def replica_of(root: Path, limit: str | None = None) -> ApiReplica:
    (config,) = load_project(root).apis
    raw = config.model_dump(mode="json")
    if limit is not None:
        raw["api"]["max_body_size"] = limit
    return ApiReplica(raw, str(root))


def ask(
    app: ApiReplica | ProtocolRouter,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    prefix: str = "",
) -> Response:
    """What ``app`` answers a request that Serve's proxy routed to it (prefix: the route's)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": prefix}
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    scope.update(headers=raw, query_string=b"")
    response: Response = asyncio.run(app(Request(scope, receive)))
    return response


def answer(response: Response) -> tuple[int, Any]:
    return response.status_code, orjson.loads(bytes(response.body)) if response.body else None


@pytest.fixture
def echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ApiReplica:
    monkeypatch.chdir(tmp_path)  # the replica changes into the project; the test gets its cwd back
    files = {"predictor.py": "def predict(sample, metadata):\n    return {'got': sample}\n"}
    return replica_of(make_project(tmp_path / "p", PREDICTOR, files), "1Ki")


def test_a_post_without_a_body_is_a_null_sample_as_locally(echo: ApiReplica) -> None:
    assert answer(ask(echo, "POST", "/pyd/echo", prefix="/pyd/echo")) == (200, {"got": None})
    assert answer(ask(echo, "POST", "/pyd/echo", b"  ", prefix="/pyd/echo")) == (200, {"got": None})
    said_json = ask(
        echo, "POST", "/pyd/echo", headers={"Content-Type": "application/json"}, prefix="/pyd/echo"
    )
    assert answer(said_json) == (400, {"error": "malformed JSON: the request body is empty"})


def test_a_compressed_body_is_415_not_malformed_json(echo: ApiReplica) -> None:
    gzipped = ask(echo, "POST", "/pyd/echo", b"\x1f\x8b\x08", {"Content-Encoding": "gzip"}, "/pyd/echo")
    message = "Content-Encoding gzip is not supported: send the body uncompressed"
    assert answer(gzipped) == (415, {"error": message})
    router = ProtocolRouter("tfserving")  # the V2 and TF Serving routes refuse it too
    coded = ask(router, "POST", "/v1/models/echo:predict", b"\x1f\x8b", {"Content-Encoding": "gzip"}, "/v1")
    assert answer(coded) == (415, {"error": message})


def test_a_cors_preflight_and_a_head_are_answered_as_locally(echo: ApiReplica) -> None:
    preflight = ask(echo, "OPTIONS", "/pyd/echo", prefix="/pyd/echo")
    assert preflight.status_code == 204 and not preflight.body
    assert preflight.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert "X-API-Key" in preflight.headers["access-control-allow-headers"]
    assert ask(echo, "HEAD", "/pyd/echo", prefix="/pyd/echo").status_code == 200
    router = ProtocolRouter("v2")  # the V2 and TF Serving routes answer a preflight too
    assert ask(router, "OPTIONS", "/v2/models/echo/infer", prefix="/v2").status_code == 204


def test_cortex_signature_route_below_the_endpoint(echo: ApiReplica, tmp_path: Path) -> None:
    iris = replica_of(example("iris-onnx"))
    signature = ask(iris, "GET", "/iris/classifier/signature", prefix="/iris/classifier")
    assert answer(signature) == (200, {"signature": {"input": {"shape": [None, 4], "type": "float32"}}})
    predictor = ask(echo, "GET", "/pyd/echo/signature", prefix="/pyd/echo")
    assert answer(predictor) == (
        404,
        {"error": "api 'echo' is a Python predictor: it has no model signature"},
    )
    posted = ask(iris, "POST", "/iris/classifier/signature", b"{}", prefix="/iris/classifier")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"


def test_a_tensor_request_over_the_apis_body_limit_is_413(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    iris = replica_of(example("iris-onnx"), "1Ki")
    large = orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 100})
    status, body, header = asyncio.run(iris.call(messages.TF_PREDICT, large))
    assert (status, orjson.loads(body), header) == (
        413,
        {"error": "the request body is larger than 1024 bytes, the API's max_body_size"},
        0,
    )
    small = orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert asyncio.run(iris.call(messages.TF_PREDICT, small))[0] == 200


def test_a_stream_that_fails_before_its_first_item_is_a_plain_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was a 200 whose one NDJSON line was the error: the gateway answers a 500, as for a
    # predictor that raises, since no item was sent yet.
    monkeypatch.chdir(tmp_path)
    code = (
        "def words(n):\n    if n == 1:\n        raise ValueError('broke')\n    yield from range(n)\n\n\n"
        "def predict(sample, metadata):\n    return words(sample)\n"
    )
    replica = replica_of(make_project(tmp_path / "p", PREDICTOR, {"predictor.py": code}))
    failed = ask(replica, "POST", "/pyd/echo", b"1", prefix="/pyd/echo")
    message = "predict in predictor.py failed after 0 item(s): ValueError: broke"
    assert (failed.status_code, orjson.loads(bytes(failed.body))) == (500, {"error": message})
    later = ask(replica, "POST", "/pyd/echo", b"3", prefix="/pyd/echo")  # after an item: in the stream
    assert later.status_code == 200 and later.media_type == "application/x-ndjson"
    empty = ask(replica, "POST", "/pyd/echo", b"0", prefix="/pyd/echo")  # no item, no error
    assert empty.status_code == 200 and empty.media_type == "application/x-ndjson"


def test_get_on_the_endpoint_is_status_and_signature_without_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    status, body = answer(
        ask(replica_of(example("iris-onnx")), "GET", "/iris/classifier", prefix="/iris/classifier")
    )
    assert status == 200 and "replicas" not in body
    assert (body["name"], body["endpoint"], body["status"], body["model_format"]) == (
        "classifier",
        "/iris/classifier",
        "live",
        "onnx",
    )
    assert body["device"] == "CPUExecutionProvider" and "version" in body
    assert [spec["name"] for spec in body["signature"]["inputs"]] == ["input"]
