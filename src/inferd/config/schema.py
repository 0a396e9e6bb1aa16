"""The project schema: Cortex v0.10's ``cortex.yaml`` with its defaults and rules, plus extensions.

Every field carries a description; unknown keys are errors. After this layer only these typed
objects travel, never raw dicts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inferd.config.quantity import parse_quantity

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ENDPOINT = re.compile(r"^[a-zA-Z0-9_\-\./]*$")
# Paths the gateway answers itself (and everything under them); an API endpoint may not shadow
# them. Only these: Cortex let an endpoint be any path, and /v1/iris or /v2/classifier are
# ordinary API versions (endpoints are matched before the protocol routes).
RESERVED_PATHS = (
    "/v1/models",
    "/v2/health",
    "/v2/models",
    "/healthz",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/dashboard",
)
RESERVED_EXACT = ("/v2",)  # the V2 server metadata; /v2/<other> is free


def reserved(endpoint: str) -> bool:
    """Whether ``endpoint`` would shadow a route the gateway answers itself."""
    return endpoint in RESERVED_EXACT or any(
        endpoint == path or endpoint.startswith(path + "/") for path in RESERVED_PATHS
    )


URI_SCHEMES = ("s3://", "gs://", "gcs://", "http://", "https://")


class FieldError(Exception):
    """A project-level rule failed at ``location`` (a path into the YAML document)."""

    def __init__(self, location: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _metadata_keys(value: dict[Any, Any]) -> dict[str, Any]:
    for key in value:
        if not isinstance(key, str):
            raise ValueError(f"keys must be strings (found {key!r})")
    return value


def _dns_1035(value: str) -> str:
    if not DNS_1035.match(value) or len(value) > 63:
        raise ValueError(
            f"{value!r} must start with a lower-case letter and contain only lower-case "
            "letters, digits and '-' (DNS-1035)"
        )
    return value


def _canonical_endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    if not ENDPOINT.match(value):
        raise ValueError(f"{value!r} may contain only letters, digits, '_', '-', '.' and '/'")
    if "//" in value:
        raise ValueError(f"{value!r} must not contain '//'")
    if any(part in (".", "..") for part in value.split("/")):  # clients resolve them away
        raise ValueError(f"{value!r} must not contain '.' or '..' as a path segment")
    canonical = "/" + value.strip("/")
    if canonical == "/":
        raise ValueError("must not be '/'")
    return canonical


V09_HANDLERS = (
    "Cortex v0.9's handler arguments: pre_inference(sample, signature) and "
    "post_inference(prediction, signature); set by v0.9's flat form (model: on the api)"
)
V09_KEYS = ("model", "model_format", "request_handler", "tf_signature_key", "tags")


def from_v09(data: dict[Any, Any]) -> dict[Any, Any]:
    """Cortex v0.9's flat api (``model``, ``model_format``, ``request_handler``,
    ``tf_signature_key``, ``tags``) as v0.10's nested ``tensorflow:`` / ``onnx:`` block."""
    if not any(key in data for key in V09_KEYS):
        return data
    if any(key in data for key in ("tensorflow", "onnx", "predictor")):
        raise ValueError(
            "use either Cortex v0.9's flat model/model_format/request_handler or a "
            "tensorflow/onnx/predictor block, not both"
        )
    model = data.get("model")
    if not isinstance(model, str):
        raise ValueError("model: required (a string) in Cortex v0.9's flat form")
    default = "onnx" if model.endswith(".onnx") else "tensorflow"
    model_format = data.get("model_format") or default
    if model_format not in ("tensorflow", "onnx"):
        raise ValueError(f"model_format: must be tensorflow or onnx (found {model_format!r})")
    block: dict[str, Any] = {"model": model, "v09_handlers": True}
    if data.get("request_handler") is not None:
        block["request_handler"] = data["request_handler"]
    if data.get("tf_signature_key") is not None:
        if model_format == "onnx":
            raise ValueError("tf_signature_key: only for a tensorflow model")
        block["signature_key"] = data["tf_signature_key"]
    nested = {key: value for key, value in data.items() if key not in V09_KEYS}
    nested[model_format] = block
    return nested


class TensorFlowSpec(_Block):
    """``tensorflow:``: a TensorFlow SavedModel served in-process."""

    model: str = Field(description="SavedModel folder, a parent of numeric version folders, or a .zip")
    request_handler: str | None = Field(None, description="Python file with pre/post_inference")
    signature_key: str | None = Field(None, description="SignatureDef to serve")
    python_path: str | None = Field(None, description="Folder added to sys.path for the handler")
    metadata: dict[Any, Any] = Field(default_factory=dict, description="Passed to the handlers")
    full_shapes: bool = Field(
        False,
        description="inferd extension: give handlers outputs in their full shapes instead of "
        "flattened to one dimension as Cortex did",
    )
    v09_handlers: bool = Field(False, description=V09_HANDLERS)

    _keys = field_validator("metadata")(_metadata_keys)


class OnnxSpec(_Block):
    """``onnx:``: an ONNX model served with onnxruntime."""

    model: str = Field(description="Path or URI of the .onnx file")
    request_handler: str | None = Field(None, description="Python file with pre/post_inference")
    python_path: str | None = Field(None, description="Folder added to sys.path for the handler")
    metadata: dict[Any, Any] = Field(default_factory=dict, description="Passed to the handlers")
    tensorrt: bool = Field(
        False,
        description="inferd extension: on a GPU, try TensorRT's execution provider before CUDA's "
        "(used when onnxruntime has it)",
    )
    v09_handlers: bool = Field(False, description=V09_HANDLERS)

    _keys = field_validator("metadata")(_metadata_keys)


class PredictorSpec(_Block):
    """``predictor:``: a Python file with ``init(model_path, metadata)`` and ``predict``."""

    path: str = Field(description="Python file defining predict(sample, metadata)")
    model: str | None = Field(None, description="File or folder handed to init() as model_path")
    python_path: str | None = Field(None, description="Folder added to sys.path for the predictor")
    metadata: dict[Any, Any] = Field(default_factory=dict, description="Passed to init and predict")

    _keys = field_validator("metadata")(_metadata_keys)


class Tracker(_Block):
    """``tracker:``: prediction monitoring."""

    key: str | None = Field(None, description="Key of the response object to track")
    model_type: Literal["classification", "regression", ""] = Field(
        "", description="classification (class counts) or regression (min/max/avg)"
    )

    @field_validator("model_type", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value


class Compute(_Block):
    """``compute:``: resources of each replica and bounds of the replica count."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas (0: inferd's scale to zero)")
    max_replicas: int = Field(100, ge=1, description="Most replicas")
    init_replicas: int | None = Field(None, ge=0, description="Replicas at start (= min_replicas)")
    target_cpu_utilization: int = Field(
        80,
        gt=0,
        le=100,
        description="Cortex's CPU target (percent); inferd scales on in-flight requests",
    )
    cpu: str | int | float = Field("200m", description="CPU per replica (200m, 0.5, 2)")
    mem: str | int | None = Field(
        None, description="Memory per replica (512Mi, 2G): a request, for placement and capacity (Cortex)"
    )
    mem_limit: str | int | None = Field(
        None,
        description="inferd extension: a hard cap on each replica's memory (cgroup v2 memory.max where "
        "inferd may create one, else stopped when its RSS passes it)",
    )
    gpu: int = Field(0, ge=0, description="Whole GPUs per replica, each replica on its own devices")
    gpu_memory: str | int | None = Field(
        None,
        description="inferd extension: with gpu: 1, share a device: each replica gets this much of "
        "one GPU's memory (4Gi) and replicas are packed onto a device while their shares fit",
    )
    cpu_fallback: bool = Field(
        False,
        description="inferd extension: run on the CPU when the replica's GPU cannot be used (no "
        "CUDA-enabled onnxruntime/TensorFlow, no driver) instead of failing to load",
    )

    @field_validator("cpu", "mem", "gpu_memory")
    @classmethod
    def _quantity(cls, value: str | int | float | None) -> str | int | float | None:
        if value is not None and parse_quantity(value) <= 0:
            raise ValueError("must be > 0")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Compute:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        if self.init_replicas is not None:
            if self.init_replicas < self.min_replicas:
                raise ValueError("init_replicas must be >= min_replicas")
            if self.init_replicas > self.max_replicas:
                raise ValueError("init_replicas must be <= max_replicas")
        if self.gpu_memory is not None and self.gpu != 1:
            raise ValueError("gpu_memory is a share of one device: set gpu: 1 with it")
        if self.mem is not None and self.mem_limit is not None and self.mem_limit_bytes < self.mem_bytes:  # type: ignore[operator]
            raise ValueError("mem_limit must be >= mem (mem is what a replica asks for, mem_limit its cap)")
        return self

    @property
    def replicas_at_start(self) -> int:
        return self.min_replicas if self.init_replicas is None else self.init_replicas

    @property
    def cpu_cores(self) -> float:
        return parse_quantity(self.cpu)

    @property
    def mem_bytes(self) -> int | None:
        return None if self.mem is None else int(parse_quantity(self.mem))

    @property
    def mem_limit_bytes(self) -> int | None:
        return None if self.mem_limit is None else int(parse_quantity(self.mem_limit))

    @property
    def gpu_memory_bytes(self) -> int | None:
        return None if self.gpu_memory is None else int(parse_quantity(self.gpu_memory))


class Autoscaling(_Block):
    """``autoscaling:`` (inferd extension): scale on in-flight requests per replica."""

    target_in_flight: float = Field(
        1.0, gt=0, description="In-flight requests (queued + running) per replica to aim for"
    )
    upscale_window: float = Field(5.0, gt=0, description="Seconds of load averaged to scale up")
    downscale_window: float = Field(60.0, gt=0, description="Seconds of low load before scaling down")


class Auth(_Block):
    """``auth:`` (inferd extension): API keys, sent as ``Authorization: Bearer KEY`` or ``X-API-Key``.

    Keys are read when the API is deployed, from environment variables of the shell that runs
    ``inferd deploy`` (or ``inferd serve``) and/or a file with one key per line; they never appear
    in logs or state (the variables' values are kept apart, in ``secrets.json``).
    """

    keys_from_env: list[str] = Field(default_factory=list, description="Environment variables holding keys")
    keys_file: str | None = Field(
        None, description="File with one key per line (absolute, or in the project)"
    )

    @model_validator(mode="after")
    def _some_source(self) -> Auth:
        if not self.keys_from_env and self.keys_file is None:
            raise ValueError("give keys_from_env and/or keys_file")
        return self


class Batching(_Block):
    """``batching:`` (inferd extension): group queued requests into one model call."""

    max_batch_size: int = Field(ge=1, le=4096, description="Most samples in one model call")
    batch_interval: float = Field(
        0.0, ge=0, le=10, description="Seconds a partial batch may wait for more requests (0: never wait)"
    )


class PayloadLog(_Block):
    """``payload_log:`` (inferd extension): record sampled requests and answers under $INFERD_HOME."""

    sample: float = Field(gt=0, le=1, description="Fraction of requests recorded (1.0: every one)")
    max_size: str | int = Field(
        "16Mi", description="Size at which the log rotates (one older file is kept, then dropped)"
    )

    @field_validator("max_size")
    @classmethod
    def _size(cls, value: str | int) -> str | int:
        if parse_quantity(value) < 4096:
            raise ValueError("must be at least 4Ki")
        return value

    @property
    def max_bytes(self) -> int:
        return int(parse_quantity(self.max_size))


class Shadow(_Block):
    """``shadow:`` (inferd extension): copy a share of the requests to another API of the project;
    its answers are recorded beside the primary's, never returned."""

    api: str = Field(description="The API of this project that gets the copies")
    percent: float = Field(100.0, ge=0, le=100, description="Percent of the requests copied")


class Api(_Block):
    """``kind: api``: one model served at one endpoint."""

    kind: Literal["api"] = Field(description="Always 'api'")
    name: str = Field(description="DNS-1035 name, unique in the file")
    endpoint: str | None = Field(None, description="URL path (default /<deployment>/<api>)")
    tensorflow: TensorFlowSpec | None = Field(None, description="A TensorFlow SavedModel")
    onnx: OnnxSpec | None = Field(None, description="An ONNX model")
    predictor: PredictorSpec | None = Field(None, description="A Python predictor")
    tracker: Tracker | None = Field(None, description="Prediction monitoring")
    compute: Compute = Field(default_factory=Compute, description="Resources and replicas")
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling, description="inferd extension: how replicas follow the load"
    )
    max_queue_length: int = Field(
        1000, ge=1, description="inferd extension: requests that may wait for a replica; beyond, 503"
    )
    timeout: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="inferd extension: seconds a request (or a whole stream) may take (queue + run); 504",
    )
    item_timeout: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="inferd extension: seconds a stream may go between two items (default: timeout)",
    )
    max_body_size: str | int = Field("10Mi", description="inferd extension: largest request body; 413")
    auth: Auth | None = Field(None, description="inferd extension: API keys")
    batching: Batching | None = Field(None, description="inferd extension: adaptive batching")
    payload_log: PayloadLog | None = Field(
        None, description="inferd extension: record sampled requests and answers (off by default)"
    )
    shadow: Shadow | None = Field(
        None, description="inferd extension: copy requests to another API and record its answers"
    )

    @field_validator("max_body_size")
    @classmethod
    def _body_size(cls, value: str | int) -> str | int:
        if parse_quantity(value) < 1:
            raise ValueError("must be at least 1 byte")
        return value

    @property
    def body_limit(self) -> int:
        return int(parse_quantity(self.max_body_size))

    _name = field_validator("name")(_dns_1035)
    _endpoint = field_validator("endpoint")(_canonical_endpoint)

    @model_validator(mode="before")
    @classmethod
    def _flat_v09(cls, data: Any) -> Any:
        return from_v09(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _one_format(self) -> Api:
        count = sum(block is not None for block in (self.tensorflow, self.onnx, self.predictor))
        if count == 0:
            raise ValueError("please specify a model format (tensorflow, onnx, or predictor)")
        if count > 1:
            raise ValueError("please specify only one model format (tensorflow, onnx, or predictor)")
        return self

    @property
    def model_format(self) -> Literal["tensorflow", "onnx", "predictor"]:
        if self.tensorflow is not None:
            return "tensorflow"
        if self.onnx is not None:
            return "onnx"
        return "predictor"

    @property
    def model_uri(self) -> str | None:
        block = self.tensorflow or self.onnx or self.predictor
        assert block is not None
        return block.model

    @property
    def handler_file(self) -> str | None:
        """The user's Python file: the request handler or the predictor."""
        if self.predictor is not None:
            return self.predictor.path
        block = self.tensorflow or self.onnx
        assert block is not None
        return block.request_handler

    @property
    def v09_handlers(self) -> bool:
        """Whether the handlers take Cortex v0.9's arguments (sample/prediction, signature)."""
        block = self.tensorflow or self.onnx
        return block is not None and block.v09_handlers

    @property
    def python_path(self) -> str | None:
        block = self.tensorflow or self.onnx or self.predictor
        assert block is not None
        return block.python_path

    @property
    def metadata(self) -> dict[str, Any]:
        block = self.tensorflow or self.onnx or self.predictor
        assert block is not None
        return block.metadata


class SplitterApi(_Block):
    """One entry of a traffic splitter's ``apis``."""

    name: str = Field(description="An API of the project")
    weight: int = Field(ge=0, le=100, description="Percent of the splitter's requests it gets")


class TrafficSplitter(_Block):
    """``kind: traffic_splitter`` (Cortex's later shape): one endpoint over several APIs by weight."""

    kind: Literal["traffic_splitter"] = Field(description="Always 'traffic_splitter'")
    name: str = Field(description="DNS-1035 name, unique among the APIs and splitters of the file")
    endpoint: str | None = Field(None, description="URL path (default /<deployment>/<splitter>)")
    apis: tuple[SplitterApi, ...] = Field(min_length=1, description="The APIs and their weights")
    shadow: Shadow | None = Field(
        None, description="inferd extension: copy requests to another API and record its answers"
    )

    _name = field_validator("name")(_dns_1035)
    _endpoint = field_validator("endpoint")(_canonical_endpoint)


class Deployment(_Block):
    """``kind: deployment``: names the group of APIs; exactly one per file."""

    kind: Literal["deployment"] = Field(description="Always 'deployment'")
    name: str = Field(description="DNS-1123 name of the deployment")
    relax_pins: bool = Field(
        False,
        description="inferd extension: install the nearest installable version of a "
        "requirements.txt pin that cannot install on this Python (as --relax-pins)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DNS_1123.match(value) or len(value) > 63:
            raise ValueError(
                f"{value!r} must contain only lower-case letters, digits and '-', and start "
                "and end with a letter or digit (underscores are not allowed)"
            )
        return value


class ApiConfig(_Block):
    """One API with everything derived from the project filled in (endpoint, paths)."""

    api: Api
    deployment: str = Field(description="Name of the deployment the API belongs to")
    endpoint: str = Field(description="The canonical endpoint path")
    project_root: Path | None = Field(None, description="The project folder (for relative paths)")

    @property
    def name(self) -> str:
        return self.api.name

    @property
    def key(self) -> str:
        """``deployment/api``: the API's identity on an operator (names are unique per deployment)."""
        return f"{self.deployment}/{self.api.name}"


class SplitterConfig(_Block):
    """A traffic splitter with its endpoint filled in."""

    splitter: TrafficSplitter
    deployment: str = Field(description="Name of the deployment the splitter belongs to")
    endpoint: str = Field(description="The canonical endpoint path")

    @property
    def name(self) -> str:
        return self.splitter.name

    @property
    def weights(self) -> dict[str, int]:
        return {entry.name: entry.weight for entry in self.splitter.apis}


class Project(_Block):
    """A validated project folder."""

    root: Path = Field(description="The project folder (absolute)")
    config_file: Path = Field(description="Its cortex.yaml / inferd.yaml")
    deployment: Deployment
    apis: tuple[ApiConfig, ...]
    splitters: tuple[SplitterConfig, ...] = Field(default=(), description="Traffic splitters")

    def relaxed(self) -> Project:
        """This project with ``relax_pins`` on (``--relax-pins``)."""
        deployment = self.deployment.model_copy(update={"relax_pins": True})
        return self.model_copy(update={"deployment": deployment})

    def api(self, name: str) -> ApiConfig:
        for config in self.apis:
            if config.name == name:
                return config
        raise KeyError(name)


def is_remote(uri: str) -> bool:
    return uri.startswith(URI_SCHEMES)


def _inside(root: Path, relative: str, location: tuple[str | int, ...], what: str) -> Path:
    candidate = Path(relative)
    path = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if path != root and root not in path.parents:
        raise FieldError(location, f"{what} {relative!r} is outside the project folder")
    return path


def check_project(
    config_file: Path,
    deployments: list[tuple[int, Deployment]],
    apis: list[tuple[int, Api]],
    keys_root: Path | None = None,
    splitters: list[tuple[int, TrafficSplitter]] | None = None,
) -> Project:
    """Apply the rules that span resources and the files they name; raise ``FieldError``.

    ``keys_root``: where relative ``auth.keys_file`` paths are (a snapshot's source project, as
    key files are never copied); they become absolute.
    """
    root = config_file.parent
    if not deployments:
        raise FieldError((), f"{config_file.name} must define a deployment resource (kind: deployment)")
    if len(deployments) > 1:
        raise FieldError((deployments[1][0],), "deployment: only one deployment resource is allowed")
    deployment = deployments[0][1]
    names: set[str] = set()
    endpoints: dict[str, str] = {}
    configs: list[ApiConfig] = []
    for index, api in apis:
        label = f"api '{api.name}'"
        if api.name in names:
            raise FieldError((index, "name"), f"{label}: name: another api is named {api.name!r}")
        names.add(api.name)
        endpoint = api.endpoint or f"/{deployment.name}/{api.name}"
        if reserved(endpoint):
            raise FieldError((index, "endpoint"), f"{label}: endpoint: {endpoint} is reserved by inferd")
        if endpoint in endpoints:
            raise FieldError(
                (index, "endpoint"),
                f"{label}: endpoint: multiple APIs specify the same endpoint ({endpoint}, "
                f"also api '{endpoints[endpoint]}')",
            )
        endpoints[endpoint] = api.name
        if keys_root is not None and api.auth is not None and api.auth.keys_file is not None:
            absolute = str((keys_root / api.auth.keys_file).resolve())  # unchanged when absolute
            api = api.model_copy(update={"auth": api.auth.model_copy(update={"keys_file": absolute})})
        _check_files(root, index, api)
        configs.append(ApiConfig(api=api, deployment=deployment.name, endpoint=endpoint, project_root=root))
    for index, api in apis:
        _check_shadow(index, f"api '{api.name}'", api.name, api.shadow, names)
    routes = _check_splitters(deployment.name, splitters or [], names, endpoints)
    return Project(
        root=root, config_file=config_file, deployment=deployment, apis=tuple(configs), splitters=routes
    )


def _check_splitters(
    deployment: str,
    splitters: list[tuple[int, TrafficSplitter]],
    names: set[str],
    endpoints: dict[str, str],
) -> tuple[SplitterConfig, ...]:
    """Splitters name APIs of the project and take names and endpoints no API or splitter has."""
    routes: list[SplitterConfig] = []
    taken = set(names)
    for index, splitter in splitters:
        label = f"traffic_splitter '{splitter.name}'"
        if splitter.name in taken:
            raise FieldError(
                (index, "name"), f"{label}: name: an api or splitter is already named {splitter.name!r}"
            )
        taken.add(splitter.name)
        total = sum(entry.weight for entry in splitter.apis)
        if total != 100:
            raise FieldError(
                (index, "apis"), f"{label}: apis: the weights must add up to 100 (they add up to {total})"
            )
        listed: set[str] = set()
        for position, entry in enumerate(splitter.apis):
            if entry.name in listed:
                raise FieldError(
                    (index, "apis", position, "name"), f"{label}: apis: api {entry.name!r} is listed twice"
                )
            listed.add(entry.name)
            if entry.name not in names:
                known = ", ".join(sorted(names)) or "none"
                raise FieldError(
                    (index, "apis", position, "name"),
                    f"{label}: apis: no api named {entry.name!r} in this project (apis: {known})",
                )
        _check_shadow(index, label, splitter.name, splitter.shadow, names)
        endpoint = splitter.endpoint or f"/{deployment}/{splitter.name}"
        if reserved(endpoint):
            raise FieldError((index, "endpoint"), f"{label}: endpoint: {endpoint} is reserved by inferd")
        if endpoint in endpoints:
            raise FieldError(
                (index, "endpoint"),
                f"{label}: endpoint: {endpoint} is already the endpoint of '{endpoints[endpoint]}'",
            )
        endpoints[endpoint] = splitter.name
        routes.append(SplitterConfig(splitter=splitter, deployment=deployment, endpoint=endpoint))
    return tuple(routes)


def _check_shadow(index: int, label: str, name: str, shadow: Shadow | None, names: set[str]) -> None:
    """A shadow names another API of the project."""
    if shadow is None:
        return
    if shadow.api == name:
        raise FieldError((index, "shadow", "api"), f"{label}: shadow.api: cannot be {name!r} itself")
    if shadow.api not in names:
        known = ", ".join(sorted(names)) or "none"
        raise FieldError(
            (index, "shadow", "api"),
            f"{label}: shadow.api: no api named {shadow.api!r} in this project (apis: {known})",
        )


def _check_files(root: Path, index: int, api: Api) -> None:
    label = f"api '{api.name}'"
    block_name = api.model_format
    if api.handler_file is not None:
        field = "path" if api.predictor is not None else "request_handler"
        where = (index, block_name, field)
        path = _inside(root, api.handler_file, where, f"{label}: {block_name}.{field}:")
        if not path.is_file():
            raise FieldError(where, f"{label}: {block_name}.{field}: {api.handler_file} does not exist")
        if path.suffix not in (".py", ".pickle"):
            raise FieldError(where, f"{label}: {block_name}.{field}: must be a .py (or dill .pickle) file")
    if api.auth is not None and api.auth.keys_file is not None:
        keys = Path(api.auth.keys_file)
        if not (keys if keys.is_absolute() else root / keys).is_file():
            raise FieldError(
                (index, "auth", "keys_file"), f"{label}: auth.keys_file: {api.auth.keys_file} does not exist"
            )
    if api.python_path is not None:
        where = (index, block_name, "python_path")
        path = _inside(root, api.python_path, where, f"{label}: {block_name}.python_path:")
        if not path.is_dir():
            raise FieldError(where, f"{label}: {block_name}.python_path: {api.python_path} is not a folder")
    uri = api.model_uri
    if uri is not None and not is_remote(uri):
        where = (index, block_name, "model")
        path = _inside(root, uri, where, f"{label}: {block_name}.model:")
        if not path.exists():
            raise FieldError(where, f"{label}: {block_name}.model: {uri} does not exist")
        if api.onnx is not None and not path.is_file():
            raise FieldError(where, f"{label}: onnx.model: {uri} must be a file")
        if api.tensorflow is not None and not (path.is_dir() or path.suffix == ".zip"):
            raise FieldError(
                where, f"{label}: tensorflow.model: {uri} must be a SavedModel folder (or a .zip of one)"
            )
