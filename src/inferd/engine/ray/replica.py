"""What runs inside Ray Serve: an API's replicas and the V2 / TF Serving router.

``ApiReplica`` builds the same ``Predictor`` as a local replica and answers through
``inferd.replica.answering.answer``, so handler semantics, input conversion and errors are the
local ones. Its request methods are ``async`` and never await while the handler runs: the
replica's user event loop runs exactly one request at a time (handler globals stay safe, as
Cortex promised), while Ray may queue ``max_ongoing_requests`` on it so that a replica never
idles between requests. Ray itself is imported only by the builders, which Serve calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from inferd import codec
from inferd.config.schema import ApiConfig, is_remote
from inferd.engine.ray import routes
from inferd.engine.ray.plan import API_DEPLOYMENT, ROUTER_DEPLOYMENT
from inferd.engine.ray.status import summarize_error
from inferd.errors import body_too_large
from inferd.handler.predictor import Predictor
from inferd.protocols import cortex
from inferd.replica import messages
from inferd.replica.answering import answer
from inferd.replica.streaming import http_chunks
from inferd.storage import fetch, local_model_path

if TYPE_CHECKING:
    from ray.serve import Application
    from ray.serve.handle import DeploymentHandle

log = logging.getLogger("inferd.replica")

JSON = "application/json"
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "*"}
CATALOG_TTL = 5.0
# A handle's call to an API with no replica yet (starting, or failed to start) waits for one,
# for minutes; a status or metadata request answers "not ready" after this long instead.
DESCRIBE_TIMEOUT = 3.0
FAILED_APPS = ("DEPLOY_FAILED", "UNHEALTHY")


def _log_to_stderr(api: str) -> None:
    # Ray keeps each worker's stderr in worker-<id>-*.err, which `inferd logs -e` reads.
    logger = logging.getLogger("inferd")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {api} [{os.getpid()}] %(levelname)s %(message)s")
        )
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def binary_header(meta: bytes) -> int:
    """The V2 binary header length a replica's reply metadata carries (0: a JSON answer)."""
    return int(messages.META.unpack_from(meta)[4]) if len(meta) >= messages.META.size else 0


class ApiReplica:
    """One replica of one API (the Serve deployment called ``inferd`` in the API's app)."""

    def __init__(self, config: dict[str, Any], project_root: str | None = None) -> None:
        api_config = ApiConfig.model_validate(config)
        self.config = api_config
        _log_to_stderr(api_config.name)
        root = Path(project_root or os.getcwd()).resolve()
        os.chdir(root)  # handlers open files relative to the project, as locally
        uri = api_config.api.model_uri
        model_path: Path | None = None
        if uri is not None:
            model_path = fetch(uri)[0] if is_remote(uri) else local_model_path(uri, root)
        self.predictor = Predictor(api_config.api, root, model_path)
        described = self.predictor.describe()
        self.info: dict[str, Any] = {"pid": os.getpid(), "endpoint": api_config.endpoint, **described}
        self.limit = api_config.api.body_limit
        self.version = ""
        log.info("replica is ready (pid %d)", os.getpid())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve hands over ``user_config``: the version this replica serves."""
        self.version = str(user_config.get("version", ""))

    async def __call__(self, request: Request) -> Response:
        """``POST <endpoint>`` (a prediction) or ``GET <endpoint>`` (status and signature), and
        the rest of what the gateway answers there (a preflight, ``<endpoint>/signature``)."""
        path = str(request.scope.get("path", ""))
        below = path[len(str(request.scope.get("root_path", ""))) :].strip("/")
        if request.method == "OPTIONS":  # a CORS preflight, on any path as the gateway
            return Response(b"", 204, headers={**CORS, **cortex.PREFLIGHT})
        if below == cortex.SIGNATURE:
            return self._signature(request.method)
        if below:
            # Serve routes by prefix; the local gateway answers the endpoint itself only.
            return Response(codec.error_body(f"no API at {path}"), 404, media_type=JSON, headers=CORS)
        if request.method in ("GET", "HEAD"):
            return Response(orjson.dumps(self.status()), media_type=JSON, headers=CORS)
        if request.method != "POST":
            return _not_allowed(request.method, "GET, HEAD, POST")
        if refused := _coding_refused(request):
            return refused
        body = await request.body()
        if len(body) > self.limit:
            return Response(codec.error_body(self._too_large()), 413, media_type=JSON, headers=CORS)
        body = cortex.sample_body(body, request.headers.get("content-type", "").encode("latin-1"))
        debug = request.query_params.get("debug", "").lower() == "true"
        reply = answer(self.predictor, messages.PREDICT_DEBUG if debug else messages.PREDICT, body)
        if not isinstance(reply, tuple):  # an iterator: stream it, as the local gateway does
            sse = codec.wants_events(request.headers.get("accept", ""))
            chunks = http_chunks(self.predictor, reply, sse)
            if isinstance(chunks, tuple):  # it failed before its first item: a plain answer
                return Response(chunks[1], chunks[0], media_type=JSON, headers=CORS)
            media_type = "text/event-stream" if sse else "application/x-ndjson"
            return StreamingResponse(_on_this_loop(chunks), media_type=media_type, headers=CORS)
        status, out, _ = reply
        return Response(out, status, media_type=JSON, headers=CORS)

    def _signature(self, method: str) -> Response:
        """Cortex's ``GET <endpoint>/signature`` (protocols/cortex.py), as the gateway answers it."""
        if method not in ("GET", "HEAD"):
            return _not_allowed(method, "GET, HEAD")
        if self.config.api.predictor is not None:
            message = f"api '{self.config.name}' is a Python predictor: it has no model signature"
            return Response(codec.error_body(message), 404, media_type=JSON, headers=CORS)
        return Response(orjson.dumps(cortex.signature(self.info)), media_type=JSON, headers=CORS)

    def _too_large(self) -> str:
        return body_too_large(self.limit)  # as the local gateway's 413 says it

    async def call(self, kind: bytes, body: bytes) -> tuple[int, bytes, int]:
        """One request frame from the router (tensor protocols): status, body, binary header."""
        framing = messages.LENGTH.size if kind == messages.V2_INFER_BINARY else 0
        if len(body) - framing > self.limit:  # the API's max_body_size, as the gateway's 413
            return 413, codec.error_body(self._too_large()), 0
        reply = answer(self.predictor, kind, body)
        assert isinstance(reply, tuple)  # tensor protocols never stream
        status, out, meta = reply
        return status, out, binary_header(meta)

    def describe(self) -> dict[str, Any]:
        """The signature, as a local replica reports it when ready."""
        return self.info

    def status(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.config.name,
            "deployment": self.config.deployment,
            "endpoint": self.config.endpoint,
            "status": "live",
            "version": self.version,
            "model_format": info.get("model_format", self.config.api.model_format),
            # What this replica's model runs on (the provider; Ray sets CUDA_VISIBLE_DEVICES).
            "device": info.get("device"),
            "cuda_visible_devices": info.get("cuda_visible_devices"),
            "signature": {
                key: info[key]
                for key in ("inputs", "outputs", "signature_key", "signature_def")
                if key in info
            },
        }


def _not_allowed(method: str, allowed: str) -> Response:
    body = codec.error_body(f"method {method} is not allowed here")
    return Response(body, 405, media_type=JSON, headers={**CORS, "Allow": allowed})


def _coding_refused(request: Request) -> Response | None:
    """The gateway's 415 for a body in a ``Content-Encoding`` (it would read as malformed JSON)."""
    coding = request.headers.get("content-encoding")
    refused = None if coding is None else cortex.coding_refusal(coding.encode("latin-1"))
    return (
        None if refused is None else Response(codec.error_body(refused), 415, media_type=JSON, headers=CORS)
    )


async def _on_this_loop(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    # The generator runs on the replica's own loop (as handlers do), not in a thread pool.
    for chunk in chunks:
        yield chunk


class ServeCatalog:
    """``routes.Catalog`` over Ray Serve, from inside the router's replica."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._failed: dict[str, str] = {}  # API -> why it cannot serve (Serve's message)
        self._fetched = 0.0
        self._handles: dict[str, DeploymentHandle[Any]] = {}
        self._info: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _applications() -> dict[str, Any]:
        from ray import serve

        return dict(serve.status().applications)

    async def names(self) -> list[str]:
        if time.monotonic() - self._fetched > CATALOG_TTL:
            apps = {
                name: app for name, app in self._applications().items() if API_DEPLOYMENT in app.deployments
            }
            self._names = sorted(apps)
            self._failed = {
                # The deployment's message holds the replica's error; the app's only names it.
                name: summarize_error(app.deployments[API_DEPLOYMENT].message or app.message or "")
                or "it failed to start"
                for name, app in apps.items()
                if str(getattr(app.status, "value", app.status)) in FAILED_APPS
            }
            self._fetched = time.monotonic()
        return self._names

    def _handle(self, name: str) -> DeploymentHandle[Any]:
        handle = self._handles.get(name)
        if handle is None:
            from ray import serve

            handle = self._handles[name] = serve.get_deployment_handle(API_DEPLOYMENT, app_name=name)
        return handle

    async def _known(self, name: str) -> bool:
        if name in await self.names():
            return True
        self._fetched = 0.0  # deployed a moment ago? look again
        return name in await self.names()

    async def info(self, name: str) -> dict[str, Any] | None:
        if not await self._known(name):
            return None
        if name in self._failed:
            return {}
        try:
            info: dict[str, Any] = await asyncio.wait_for(
                self._handle(name).describe.remote(), DESCRIBE_TIMEOUT
            )
        except TimeoutError:  # no replica yet, or every one is busy: the last answer, if any
            return self._info.get(name, {})
        except Exception:  # its replica is restarting
            return {}
        self._info[name] = info
        return info

    async def error(self, name: str) -> str | None:
        await self.names()
        return self._failed.get(name)

    async def forward(self, name: str, kind: bytes, body: bytes) -> tuple[int, bytes, int]:
        await self.names()
        if name in self._failed:  # a handle would wait for a replica that never comes
            return 503, codec.error_body(f"api '{name}' is not ready: {self._failed[name]}"), 0
        try:
            result: tuple[int, bytes, int] = await self._handle(name).call.remote(kind, body)
        except Exception as exc:
            self._handles.pop(name, None)
            return 503, codec.error_body(f"api '{name}' is not ready: {type(exc).__name__}"), 0
        return result


class ProtocolRouter:
    """The ``inferd.v2`` (at ``/v2``) or ``inferd.tfserving`` (at ``/v1``) application."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.catalog = ServeCatalog()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The inferd version the router runs (a new inferd rolls the router too)."""

    async def __call__(self, request: Request) -> Response:
        if request.method == "OPTIONS":  # a CORS preflight, as the gateway answers one
            return Response(b"", 204, headers={**CORS, **cortex.PREFLIGHT})
        if refused := _coding_refused(request):
            return refused
        body = await request.body()
        path = request.url.path
        if self.protocol == "v2":
            header = request.headers.get("inference-header-content-length")
            result = await routes.v2_route(self.catalog, request.method, path, header, body)
        else:
            result = await routes.tfserving_route(self.catalog, request.method, path, body)
        headers = {**CORS, **result.headers}
        media_type = headers.pop("Content-Type", JSON)
        return Response(result.body, result.status, media_type=media_type, headers=headers)


def api_app(args: dict[str, Any]) -> Application:
    """Serve's builder for an API (``import_path`` of serveConfigV2 and of ``inferd deploy``)."""
    from ray import serve

    deployment = serve.deployment(name=API_DEPLOYMENT)(ApiReplica)
    return deployment.bind(args["config"], args.get("project_root"))


def router_app(args: dict[str, Any]) -> Application:
    """Serve's builder for a protocol router (``{"protocol": "v2" | "tfserving"}``)."""
    from ray import serve

    deployment = serve.deployment(name=ROUTER_DEPLOYMENT, ray_actor_options={"num_cpus": 0})(ProtocolRouter)
    return deployment.bind(str(args["protocol"]))
